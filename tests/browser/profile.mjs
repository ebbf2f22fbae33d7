// The account page's profile part in a real browser: change the email (the link mailed to the
// new address makes it so), download my data, delete the account.
//
// usage: node profile.mjs <server-url> <email> <password> <new-email> <outbox.jsonl> <screenshot-dir>
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, launch, linkInMail } from './common.mjs';

const [base, email, password, newEmail, outbox, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await (await browser.newContext({ acceptDownloads: true })).newPage();
  await page.goto(`${base}/signin`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signin');
  await page.waitForURL(`${base}/account`);

  await page.fill('#new-email', newEmail);
  await page.fill('#email-password', password);
  await page.click('#change-email');
  await page.waitForSelector('text=Check your new inbox');
  await page.goto(await linkInMail(outbox, newEmail, '/account/email/confirm?token='));
  await page.waitForSelector(`text=is now ${newEmail}`);
  await page.screenshot({ path: join(shots, 'email-changed.png'), fullPage: true });

  await page.goto(`${base}/account`);
  expect((await page.textContent('#email')) === newEmail, 'the account page shows the new address');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const data = JSON.parse(readFileSync(await download.path(), 'utf8'));
  expect(data.email === newEmail, `the download is this account's data: ${data.email}`);
  expect(Array.isArray(data.audit_events) && data.audit_events.some((e) => e.type === 'email_changed'),
    'the download holds the activity');
  await page.screenshot({ path: join(shots, 'account-profile.png'), fullPage: true });

  await page.fill('#delete-confirm', newEmail);
  await page.fill('#delete-password', password);
  await page.click('#delete-account');
  await page.waitForSelector('text=Account deleted');
  await page.screenshot({ path: join(shots, 'account-deleted.png'), fullPage: true });
  await page.goto(`${base}/account`);
  expect(page.url().includes('/signin'), `signed out with the account: ${page.url()}`);
  console.log('profile pages work');
} finally {
  await browser.close();
}
