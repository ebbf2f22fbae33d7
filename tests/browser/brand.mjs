// A tool maker's brand on the sign-in page a CLI login leads to, signed out: the product's
// name, colour, logo and footer, and which tool asks with its code.
//
// usage: node brand.mjs <login-url> <product> <tool> <code> <accent rgb()> <screenshot>
import { expect, launch } from './common.mjs';

const [loginUrl, product, tool, code, accent, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await (await browser.newContext()).newPage();
  await page.goto(loginUrl);
  expect(page.url().includes('/signin'), `signed out, the link leads to sign-in: ${page.url()}`);
  const title = await page.title();
  expect(title === `Sign in · ${product}`, `the title names the product: ${title}`);
  const heading = await page.textContent('h1');
  expect(heading === `Sign in to ${product}`, `the heading names the product: ${heading}`);
  const asking = await page.textContent('#asking');
  expect(asking.includes(tool) && asking.includes(code), `the tool and its code: ${asking}`);
  const colour = await page.$eval('#product-name', (e) => getComputedStyle(e).color);
  expect(colour === accent, `the product name in the accent colour: ${colour}`);
  const help = await page.getAttribute('#support', 'href');
  expect(help === 'https://acme.example/help', `the support link: ${help}`);
  const footer = await page.textContent('#footer-text');
  expect(footer.includes('Acme Inc.'), `the footer: ${footer}`);
  expect(!(await page.content()).includes('latchkey'), 'no trace of latchkey on the page');
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log('the brand shows');
} finally {
  await browser.close();
}
