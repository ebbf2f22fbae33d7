// A person approving a CLI login in a real browser: opens the URL the CLI printed, is sent to
// sign in, creates an account instead, confirms the email from the dev outbox, lands back on the
// approval page, checks the pairing code and presses Approve.
//
// usage: node approve.mjs <approval-url> <pairing-code> <email> <password> <outbox.jsonl> <screenshot.png>
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, code, email, password, outbox, screenshot] = process.argv.slice(2);

function verificationLink() {
  const lines = readFileSync(outbox, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const mail = lines.reverse().find((m) => m.to === email);
  if (!mail) throw new Error(`no email to ${email} in ${outbox}`);
  return mail.text.split(/\s+/).find((w) => w.includes('/verify-email?token='));
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  expect(page.url().includes('/signin?next='), `expected the sign-in page, got ${page.url()}`);

  await page.click('#to-signup');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signup');
  await page.waitForSelector('text=Check your email');

  await page.goto(verificationLink());
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
