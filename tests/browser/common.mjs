// What the browser scripts share: launching Debian's Chromium, reading the dev outbox, checks.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

// The link in the newest mail to `email` whose text has `marker` (it may still be on its way).
export async function linkInMail(outbox, email, marker) {
  for (let tries = 0; tries < 100; tries += 1) {
    const lines = readFileSync(outbox, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const mail = lines.reverse().find((m) => m.to === email && m.text.includes(marker));
    if (mail) return mail.text.split(/\s+/).find((w) => w.includes(marker));
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no mail to ${email} with ${marker} in ${outbox}`);
}

export function verificationLink(outbox, email) {
  return linkInMail(outbox, email, '/verify-email?token=');
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
  await page.goto(await verificationLink(outbox, email));
}
