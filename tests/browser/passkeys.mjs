// Passkeys in a real browser, on Chromium's virtual authenticators (the DevTools protocol's
// WebAuthn domain): add two (each on its own device), rename one, sign in with a passkey
// alone, use one as the second factor after the password, remove them, and a removed passkey
// signs in no more.
//
// usage: node passkeys.mjs <server-url> <email> <password> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch } from './common.mjs';

const [base, email, password, shots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const device = async () => (await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  })).authenticatorId;
  const passkeys = () => page.locator('#passkeys .passkey').count();

  async function signInWithPassword() {
    await page.goto(`${base}/signin`);
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.click('#signin');
  }
  async function signOut() {
    await page.goto(`${base}/account`);
    await page.click('#signout');
    await page.waitForURL(/\/signin/);
  }
  async function addPasskey(name) {
    const before = await passkeys();
    await page.fill('#passkey-name', name);
    await page.click('#register-passkey');
    await page.waitForFunction(
      (n) => document.querySelectorAll('#passkeys .passkey').length > n, before);
  }

  const laptop = await device();
  await signInWithPassword();
  await page.waitForURL(`${base}/account`);
  await page.goto(`${base}/account/security`);
  await addPasskey('Laptop');
  // A second device: a passkey of its own.
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: laptop });
  const phone = await device();
  await addPasskey('Spare');
  expect(await passkeys() === 2, 'two passkeys listed');
  const spare = page.locator('#passkeys .passkey').nth(1);
  await spare.locator('input[name=name]').fill('Phone');
  await spare.locator('button', { hasText: 'Rename' }).click();
  await page.waitForSelector('#passkeys input[value="Phone"]');
  await page.screenshot({ path: join(shots, 'passkeys.png'), fullPage: true });

  // A passkey alone signs in: no email, no password.
  await signOut();
  await page.click('#signin-passkey');
  await page.waitForURL(`${base}/account`);

  // With passkeys, the password alone is not enough: one is asked as the second factor.
  await signOut();
  await signInWithPassword();
  await page.waitForURL(`${base}/signin/second-factor`);
  await page.screenshot({ path: join(shots, 'second-factor-passkey.png'), fullPage: true });
  await page.click('#second-factor-passkey');
  await page.waitForURL(`${base}/account`);

  // Removed, a passkey signs in no more.
  await page.goto(`${base}/account/security`);
  while (await passkeys() > 0) {
    const before = await passkeys();
    await page.locator('#passkeys .remove-passkey').first().click();
    await page.waitForFunction(
      (n) => document.querySelectorAll('#passkeys .passkey').length < n, before);
  }
  await signOut();
  await page.click('#signin-passkey');
  await page.waitForSelector('#passkey-status:not([hidden])');
  const said = await page.textContent('#passkey-status');
  expect(said.includes('not registered'), `the removed passkey is refused: ${said}`);
  await page.screenshot({ path: join(shots, 'passkey-refused.png'), fullPage: true });
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: phone });

  console.log('passkeys work');
} finally {
  await browser.close();
}
