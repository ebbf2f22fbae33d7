// A person approving a CLI login in a real browser: opens the URL the CLI printed, is sent to
// sign in, creates an account instead, confirms the email from the dev outbox, lands back on the
// approval page, checks the pairing code and presses Approve.
//
// usage: node approve.mjs <approval-url> <pairing-code> <email> <password> <outbox.jsonl> <screenshot.png>
import { expect, launch, signUpAndVerify } from './common.mjs';

const [url, code, email, password, outbox, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(url);
  await signUpAndVerify(page, email, password, outbox);

  await page.waitForSelector('#pairing-code');
  const shown = (await page.textContent('#pairing-code')).trim();
  expect(shown === code, `the page shows ${shown}, the terminal ${code}`);
  // The CLI's loopback receiver confirmed the request came from this machine.
  await page.waitForSelector('#same-machine', { state: 'visible', timeout: 5000 });

  await page.screenshot({ path: screenshot, fullPage: true });

  await page.click('#approve');
  await page.waitForSelector('text=You are logged in on the command line');
  await page.screenshot({ path: screenshot.replace(/\.png$/, '-approved.png'), fullPage: true });
  console.log('approved');
} finally {
  await browser.close();
}
