// Two CLI logins finished in a real browser by one person: the OAuth consent page (the pairing
// code checked, Approve pressed, the browser sent to the CLI's loopback callback), then the
// mgrep hand-off page, whose script POSTs the new key to a second waiting CLI.
//
// usage: node oauth.mjs <consent-url> <pairing-code> <handoff-url> <email> <password> <outbox.jsonl> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch, signUpAndVerify } from './common.mjs';

const [consentUrl, code, handoffUrl, email, password, outbox, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  await page.goto(consentUrl);
  await signUpAndVerify(page, email, password, outbox);

  await page.waitForSelector('#pairing-code');
  const shown = (await page.textContent('#pairing-code')).trim();
  expect(shown === code, `the consent page shows ${shown}, the terminal ${code}`);
  await page.screenshot({ path: join(shots, 'oauth-consent.png'), fullPage: true });
  await page.click('#approve');
  await page.waitForSelector('text=You are logged in');
  expect(page.url().startsWith('http://127.0.0.1:'), `landed on ${page.url()}`);

  await page.goto(handoffUrl);
  await page.waitForSelector('#approve');
  await page.screenshot({ path: join(shots, 'handoff-confirm.png'), fullPage: true });
  await page.click('#approve');
  await page.waitForSelector('#sent', { state: 'visible', timeout: 10000 }).catch((e) => {
    throw new Error(`${e.message}\nconsole: ${consoleLines.join('\n')}\npage: ${page.url()}`);
  });
  await page.screenshot({ path: join(shots, 'handoff-sent.png'), fullPage: true });
  console.log('approved both');
} finally {
  await browser.close();
}
