// What the browser scripts share: launching Debian's Chromium, reading the dev outbox, checks.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export function verificationLink(outbox, email) {
  const lines = readFileSync(outbox, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const mail = lines.reverse().find((m) => m.to === email);
  if (!mail) throw new Error(`no email to ${email} in ${outbox}`);
  return mail.text.split(/\s+/).find((w) => w.includes('/verify-email?token='));
}

export function expect(condition, message) {
  if (!condition) throw new Error(message);
}

export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// From the sign-in page the CLI's link led to: create the account, confirm the email.
export async function signUpAndVerify(page, email, password, outbox) {
  expect(page.url().includes('/signin?next='), `expected the sign-in page, got ${page.url()}`);
  await page.click('#to-signup');
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signup');
  await page.waitForSelector('text=Check your email');
  await page.goto(verificationLink(outbox, email));
}
