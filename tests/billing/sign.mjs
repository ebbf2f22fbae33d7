// Prints the Stripe-Signature header Stripe's own library makes for the payload on stdin,
// with the secret in STRIPE_WEBHOOK_SECRET: `node sign.mjs < event.json`.
import Stripe from 'stripe';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const payload = Buffer.concat(chunks).toString('utf8');
const stripe = new Stripe('sk_test_unused');
process.stdout.write(
  stripe.webhooks.generateTestHeaderString({
    payload,
    secret: process.env.STRIPE_WEBHOOK_SECRET,
  }),
);
