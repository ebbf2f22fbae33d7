// The security page in a real browser: a laptop and a phone are signed in; the laptop sees
// both browsers and the app and CLI logins, revokes every login, then signs the phone out.
// The page is shown on a phone-sized screen too, and its buttons are reached by keyboard.
//
// usage: node security.mjs <server-url> <email> <password> <browsers> <logins> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch } from './common.mjs';

const [base, email, password, browsers, loginCount, shots] = process.argv.slice(2);
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 '
  + '(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1';

async function signIn(page) {
  await page.goto(`${base}/signin`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signin');
  await page.waitForURL(`${base}/account`);
}

const browser = await launch();
try {
  const laptop = await (await browser.newContext()).newPage();
  await signIn(laptop);
  const phone = await (await browser.newContext({
    userAgent: IPHONE, viewport: { width: 390, height: 844 }, isMobile: true,
  })).newPage();
  await signIn(phone);

  await phone.goto(`${base}/account/security`);
  const fits = await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  await phone.screenshot({ path: join(shots, 'security-phone.png'), fullPage: true });
  expect(fits, 'the page fits a phone screen: nothing scrolls sideways but the tables');

  await laptop.click('#security');
  await laptop.waitForURL(`${base}/account/security`);
  const sessions = await laptop.locator('#sessions .session').allInnerTexts();
  expect(sessions.length === Number(browsers), `${browsers} browsers listed: ${sessions}`);
  expect(sessions.some((s) => s.includes('Safari on iPhone')), `the phone by name: ${sessions}`);
  expect(sessions.some((s) => s.includes('this browser')), `this browser marked: ${sessions}`);
  const rows = await laptop.locator('#logins .login').count();
  expect(rows === Number(loginCount), `${loginCount} logins listed, saw ${rows}`);
  await laptop.screenshot({ path: join(shots, 'security.png'), fullPage: true });

  // Every login revoked, the first by keyboard alone: focus the button, press Enter. Each
  // press reloads the page, so the next waits for the list to shrink.
  const logins = () => laptop.locator('#logins .login').count();
  const shrunk = (from) => laptop.waitForFunction(
    (n) => document.querySelectorAll('#logins .login').length < n, from);
  let left = await logins();
  await laptop.locator('#logins .login button').first().focus();
  await laptop.keyboard.press('Enter');
  await shrunk(left);
  while ((left = await logins()) > 0) {
    await laptop.locator('#logins .login button').first().click();
    await shrunk(left);
  }
  await laptop.waitForSelector('#no-logins');

  await laptop.click('#sign-out-others');
  await laptop.waitForFunction(() => !document.querySelector('#sign-out-others'));
  expect(await laptop.locator('#sessions .session').count() === 1, 'only this browser is left');
  const activity = await laptop.locator('#activity .kind').allInnerTexts();
  for (const kind of ['sign in', 'login approved', 'login revoked', 'signed out']) {
    expect(activity.includes(kind), `the activity shows ${kind}: ${activity}`);
  }
  await laptop.screenshot({ path: join(shots, 'security-after.png'), fullPage: true });
  await phone.goto(`${base}/account`);
  expect(phone.url().includes('/signin'), `the phone was signed out: ${phone.url()}`);
  console.log('security page works');
} finally {
  await browser.close();
}
