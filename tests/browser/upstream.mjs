// A person with no account here logs a CLI in through an upstream identity provider in a real
// browser: the CLI's consent URL sends them to sign in; they click "Continue with Corp SSO",
// type their address at the provider's own sign-in page, come back signed up, see the pairing
// code on the consent page and approve.
//
// usage: node upstream.mjs <consent-url> <pairing-code> <email> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch } from './common.mjs';

const [consentUrl, code, email, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(consentUrl);
  expect(page.url().includes('/signin?next='), `expected the sign-in page, got ${page.url()}`);
  await page.click('#provider-corp');

  await page.waitForSelector('text=Sign in to Corp SSO');
  await page.screenshot({ path: join(shots, 'upstream-provider.png'), fullPage: true });
  await page.fill('#email', email);
  await page.click('#sign-in');

  await page.waitForSelector('#pairing-code');
  const shown = (await page.textContent('#pairing-code')).trim();
  expect(shown === code, `the consent page shows ${shown}, the terminal ${code}`);
  await page.screenshot({ path: join(shots, 'upstream-consent.png'), fullPage: true });
  await page.click('#approve');
  await page.waitForSelector('text=You are logged in');
  expect(page.url().startsWith('http://127.0.0.1:'), `landed on ${page.url()}`);
  console.log('logged in through the provider');
} finally {
  await browser.close();
}
