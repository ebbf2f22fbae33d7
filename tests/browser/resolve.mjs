// Resolves redirect targets as a browser would (the WHATWG URL parser in Node).
// stdin: {"base": "http://127.0.0.1:P/", "locations": ["/x", ...]}
// stdout: the resolved absolute URLs, in order, as a JSON array.
import { text } from 'node:stream/consumers';

const { base, locations } = JSON.parse(await text(process.stdin));
process.stdout.write(JSON.stringify(locations.map((location) => new URL(location, base).href)));
