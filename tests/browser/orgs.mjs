// Two people and an org in a real browser: Ann signs in, creates an org from her account page
// and invites Bob as an admin from the org page; Bob opens the mailed link, is sent to sign in,
// comes back to the invitation and joins; Ann's org page then lists him as an admin.
//
// usage: node orgs.mjs <server-url> <ann-email> <bob-email> <password> <slug> <outbox.jsonl> <screenshot-dir>
import { join } from 'node:path';
import { expect, launch, linkInMail } from './common.mjs';

const [base, ann, bob, password, slug, outbox, shots] = process.argv.slice(2);

async function signIn(page, email) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('#signin');
}

const browser = await launch();
try {
  const annPage = await (await browser.newContext()).newPage();
  await annPage.goto(`${base}/signin`);
  await signIn(annPage, ann);
  await annPage.waitForURL(`${base}/account`);
  await annPage.fill('#org-slug', slug);
  await annPage.fill('#org-name', 'Acme Tools');
  await annPage.click('#create-org');
  await annPage.waitForURL(`${base}/orgs/${slug}`);
  expect((await annPage.textContent('#your-role')).trim() === 'owner', 'Ann owns the new org');
  expect(
    (await annPage.textContent('#plan')).trim() === 'free (none)',
    'the org page shows the plan: nothing bought yet',
  );
  await annPage.fill('#invite-email', bob);
  await annPage.selectOption('#invite-role', 'admin');
  await annPage.click('#invite');
  await annPage.waitForSelector(`#invitations >> text=${bob}`);
  await annPage.screenshot({ path: join(shots, 'org-invited.png'), fullPage: true });

  const bobPage = await (await browser.newContext()).newPage();
  await bobPage.goto(await linkInMail(outbox, bob, '/invitations/accept?token='));
  expect(bobPage.url().includes('/signin?next='), `Bob is asked to sign in first: ${bobPage.url()}`);
  await signIn(bobPage, bob);
  await bobPage.waitForSelector('#accept');
  expect((await bobPage.textContent('#role')).trim() === 'admin', 'the invitation says admin');
  await bobPage.click('#accept');
  await bobPage.waitForURL(`${base}/account`);
  expect((await bobPage.content()).includes(slug), "Bob's account lists the org");

  await annPage.reload();
  const members = await annPage.textContent('#members');
  expect(members.includes(bob) && members.includes('admin'), `Bob is an admin: ${members}`);
  expect(!(await annPage.textContent('#invitations')).includes(bob), 'no invitation pending');
  await annPage.screenshot({ path: join(shots, 'org-members.png'), fullPage: true });
  console.log('org invitation accepted');
} finally {
  await browser.close();
}
