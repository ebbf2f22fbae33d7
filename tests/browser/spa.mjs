// A single-page app on another loopback origin logs a new person in with code + PKCE and calls
// a gated API, all from the page: discovery, token, gate and revocation requests cross origins.
//
// usage: node spa.mjs <spa-url> <email> <password> <outbox.jsonl> <screenshot-dir>
// Prints what the page found, as JSON, on the last line.
import { join } from 'node:path';
import { expect, launch, signUpAndVerify } from './common.mjs';

const [spaUrl, email, password, outbox, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  await page.goto(spaUrl);
  await page.click('#login');
  await page.waitForURL((url) => url.pathname === '/signin');
  await signUpAndVerify(page, email, password, outbox);
  await page.waitForSelector('#approve');
  await page.screenshot({ path: join(shots, 'spa-consent.png'), fullPage: true });
  await page.click('#approve');
  await page.waitForSelector('#result[data-done]', { timeout: 15000 }).catch((e) => {
    throw new Error(`${e.message}\nconsole: ${consoleLines.join('\n')}\npage: ${page.url()}`);
  });
  await page.screenshot({ path: join(shots, 'spa-done.png'), fullPage: true });
  expect(new URL(page.url()).origin === new URL(spaUrl).origin, `ended on ${page.url()}`);
  console.log(await page.textContent('#result'));
} finally {
  await browser.close();
}
