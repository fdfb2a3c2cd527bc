// Lease a session, fetch a page with it, report what the site answered.
// Needs CREDPOOL_ADDR, CREDPOOL_TOKEN (a crawler token) and PAGE_URL.
import { Credpool, NoCredentialAvailable } from 'credpool';

const pool = new Credpool(); // CREDPOOL_ADDR, CREDPOOL_TOKEN
try {
  const html = await pool.withLease({ site: 'shop.example', type: 'session' }, async (lease) => {
    const res = await fetch(process.env.PAGE_URL, { headers: lease.requestHeaders(), redirect: 'manual' });
    const { outcome } = await lease.reportResponse(res); // 401 expired, 403 blocked, 429 rate-limited, captcha...
    console.log(`${res.status} ${outcome} with ${lease.credential.id}`);
    return res.text();
  }, { maxWaitMs: 30_000 }); // wait out "nothing free" until the pool's nextFreeAt
  console.log(`${html.length} bytes`);
} catch (e) {
  if (!(e instanceof NoCredentialAvailable)) throw e;
  console.log(`nothing free: ${e.reason}, next at ${e.nextFreeAt?.toISOString()}`);
}
