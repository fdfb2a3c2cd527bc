// A CheerioCrawler whose every request carries a credpool session and
// reports what the site answered; blocks and logouts retry elsewhere.
// Needs CREDPOOL_ADDR, CREDPOOL_TOKEN and START_URL.
import { CheerioCrawler } from '@crawlee/cheerio'; // or from 'crawlee'
import { Credpool } from 'credpool';
import { withCredpool } from 'credpool/crawlee';

const pool = new Credpool();
const crawler = new CheerioCrawler(
  withCredpool(pool, { site: 'shop.example', type: 'session' }, {
    maxConcurrency: 4,
    async requestHandler({ request, $ }) {
      console.log(`${request.url}: ${$('title').text()}`);
    },
  }),
);
await crawler.run([process.env.START_URL]);
