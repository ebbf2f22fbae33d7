// Two-factor authentication in a real browser: set up an authenticator app from the security
// page (the code computed here, by RFC 6238 with node's own HMAC, independently of the
// server's implementation), then sign in again with a code.
//
// usage: node second_factor.mjs <server-url> <email> <password> <screenshot-dir>
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { expect, launch } from './common.mjs';

const [base, email, password, shots] = process.argv.slice(2);

function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

// RFC 6238 with SHA-1, six digits, 30-second steps; `ahead` steps from now.
function totp(secret, ahead) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + ahead));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const number = (mac.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(number).padStart(6, '0');
}

async function signIn(page) {
  await page.goto(`${base}/signin`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signin');
}

const browser = await launch();
try {
  const laptop = await (await browser.newContext()).newPage();
  await signIn(laptop);
  await laptop.waitForURL(`${base}/account`);
  await laptop.goto(`${base}/account/security`);
  await laptop.click('#setup-second-factor');
  await laptop.waitForSelector('#qr svg');
  const secret = (await laptop.textContent('#secret')).trim();
  await laptop.screenshot({ path: join(shots, 'totp-setup.png'), fullPage: true });
  await laptop.fill('#code', totp(secret, 0));
  await laptop.click('#confirm-totp');
  await laptop.waitForSelector('text=Two-factor authentication is on');
  const codes = await laptop.locator('.recovery-code').allInnerTexts();
  expect(codes.length === 10, `ten recovery codes: ${codes}`);
  await laptop.screenshot({ path: join(shots, 'recovery-codes.png'), fullPage: true });

  const desk = await (await browser.newContext()).newPage();
  await signIn(desk);
  await desk.waitForURL(`${base}/signin/second-factor`);
  await desk.screenshot({ path: join(shots, 'second-factor-prompt.png'), fullPage: true });
  await desk.fill('#code', totp(secret, 1));
  await desk.click('#verify');
  await desk.waitForURL(`${base}/account`);
  console.log('two-factor sign-in works');
} finally {
  await browser.close();
}
