// A person's account pages in a real browser: signs up, opens the confirmation link on
// another device (a second browser context), which asks for the password first; later
// forgets the password, resets it from the emailed link and signs in with the new one; then
// changes it on the account page, which signs out every other browser.
//
// usage: node account.mjs <server-url> <email> <password> <new-password> <outbox.jsonl> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch, linkInMail } from './common.mjs';

const [base, email, password, newPassword, outbox, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const laptop = await (await browser.newContext()).newPage();
  await laptop.goto(`${base}/signup`);
  await laptop.fill('#email', email);
  await laptop.fill('#password', password);
  await laptop.click('#signup');
  await laptop.waitForSelector('text=Check your email');

  // The link opened on the phone: that browser did not sign up, so the password is asked.
  const phone = await (await browser.newContext()).newPage();
  await phone.goto(await linkInMail(outbox, email, '/verify-email?token='));
  await phone.waitForSelector('text=opened in a different browser');
  await phone.screenshot({ path: join(shots, 'verify-elsewhere.png'), fullPage: true });
  await phone.fill('#password', password);
  await phone.click('#confirm');
  await phone.waitForURL(`${base}/account`);
  expect((await phone.content()).includes(email), 'the account page names the account');

  // Forgotten password: the link, a new password, every session signed out.
  const desk = await (await browser.newContext()).newPage();
  await desk.goto(`${base}/signin`);
  await desk.click('#forgot');
  await desk.fill('#email', email);
  await desk.click('#send-reset');
  await desk.waitForSelector('text=If an account uses this address');
  await desk.goto(await linkInMail(outbox, email, '/reset-password?token='));
  await desk.fill('#password', newPassword);
  await desk.click('#reset');
  await desk.waitForSelector('text=Password changed');
  await desk.screenshot({ path: join(shots, 'password-changed.png'), fullPage: true });
  await phone.goto(`${base}/account`);
  expect(phone.url().includes('/signin'), `the phone's session ended: ${phone.url()}`);

  await desk.click('#continue');
  await desk.fill('#email', email);
  await desk.fill('#password', newPassword);
  await desk.click('#signin');
  await desk.waitForURL(`${base}/account`);

  // Signed in on a second browser too, the person changes the password on the account page:
  // this browser stays signed in, the other is signed out.
  const tablet = await (await browser.newContext()).newPage();
  await tablet.goto(`${base}/signin`);
  await tablet.fill('#email', email);
  await tablet.fill('#password', newPassword);
  await tablet.click('#signin');
  await tablet.waitForURL(`${base}/account`);
  await desk.fill('#current-password', newPassword);
  await desk.fill('#new-password', `${newPassword} again`);
  await desk.click('#change-password');
  await desk.waitForSelector('text=Every other browser session');
  await desk.screenshot({ path: join(shots, 'password-changed-here.png'), fullPage: true });
  await desk.goto(`${base}/account`);
  expect(desk.url() === `${base}/account`, `this browser stays signed in: ${desk.url()}`);
  await tablet.goto(`${base}/account`);
  expect(tablet.url().includes('/signin'), `the other browser was signed out: ${tablet.url()}`);
  console.log('account pages work');
} finally {
  await browser.close();
}
