// Classification of answers, Retry-After and connection errors: pure functions.

import test from 'node:test';
import assert from 'node:assert/strict';
import { captchaCheck, classify, defaultChecks, isNetworkError, parseRetryAfter, responseInfo } from '../src/index.js';

const answer = (status, headers = {}, body, url = 'http://127.0.0.1/item/1') => ({ status, headers, body, url, requestUrl: url });

test('statuses map to outcomes', () => {
  const cases = [
    [200, 'success'],
    [204, 'success'],
    [301, 'success'],
    [401, 'expired'],
    [403, 'blocked'],
    [429, 'rate-limited'],
    [404, 'failed'],
    [400, 'failed'],
    [500, 'network'],
    [502, 'network'],
    [503, 'network'],
  ];
  for (const [status, outcome] of cases) {
    assert.equal(classify(answer(status)).outcome, outcome, `status ${status}`);
    assert.equal(classify(answer(status)).httpStatus, status);
  }
});

test('429 carries its Retry-After, in seconds or as a date; others carry none', () => {
  assert.equal(classify(answer(429, { 'retry-after': '7' })).retryAfter, 7);
  const now = Date.now();
  const date = new Date(now + 30_000).toUTCString();
  const ra = classify(answer(429, { 'retry-after': date })).retryAfter;
  assert.ok(ra >= 28 && ra <= 31, `retry after ${ra}`);
  assert.equal(classify(answer(429)).retryAfter, null);
  assert.equal(classify(answer(503, { 'retry-after': '7' })).retryAfter, null);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(new Date(now - 5000).toUTCString(), now), 0);
});

test('a captcha page is challenged and a logout is expired', () => {
  const captcha = '<html><form id="captcha" action="/captcha" method="post"></form></html>';
  assert.equal(classify(answer(200, {}, captcha)).outcome, 'challenged');
  assert.equal(classify(answer(200, {}, '<div class="g-recaptcha"></div>')).outcome, 'challenged');
  assert.equal(classify(answer(200, {}, '<p>we use captcha technology</p>')).outcome, 'success');
  assert.equal(classify(answer(302, { location: '/login' })).outcome, 'expired');
  assert.equal(classify(answer(302, { location: '/somewhere' })).outcome, 'success');
  // A followed redirect that ended on the login page.
  assert.equal(classify({ status: 200, headers: {}, url: 'http://h/login', requestUrl: 'http://h/item/2' }).outcome, 'expired');
  // Asking for the login page itself is no logout.
  assert.equal(classify({ status: 200, headers: {}, url: 'http://h/login', requestUrl: 'http://h/login' }).outcome, 'success');
});

test('checks are pluggable and speak before the status', () => {
  const soldOut = ({ body }) => (body?.includes('please log in again') ? 'expired' : null);
  const slowDown = ({ status }) => (status === 200 ? { outcome: 'rate-limited', retryAfter: 12 } : null);
  assert.equal(classify(answer(200, {}, 'please log in again'), [...defaultChecks, soldOut]).outcome, 'expired');
  assert.deepEqual(classify(answer(200), [slowDown]), { outcome: 'rate-limited', httpStatus: 200, retryAfter: 12 });
  // No checks: the status alone.
  assert.equal(classify(answer(200, {}, '<form id="captcha">'), []).outcome, 'success');
  assert.throws(() => classify(answer(200), [() => 'exploded']), /unknown outcome/);
  assert.equal(captchaCheck(answer(403, {}, '<form id="captcha">')), null);
});

test('responses of every shape are read', () => {
  const fetchLike = new Response('x', { status: 429, headers: { 'Retry-After': '3' } });
  assert.deepEqual(responseInfo(fetchLike), { status: 429, headers: { 'content-type': 'text/plain;charset=UTF-8', 'retry-after': '3' }, url: '' });
  const incoming = { statusCode: 403, headers: { 'set-cookie': ['a=1', 'b=2'], 'retry-after': '5' }, url: 'http://h/x' };
  assert.deepEqual(responseInfo(incoming), { status: 403, headers: { 'set-cookie': 'a=1, b=2', 'retry-after': '5' }, url: 'http://h/x' });
  const playwrightLike = { status: () => 401, headers: () => ({ Location: '/login' }), url: () => 'http://h/y' };
  assert.deepEqual(responseInfo(playwrightLike), { status: 401, headers: { location: '/login' }, url: 'http://h/y' });
  assert.throws(() => responseInfo({}), /status/);
  assert.throws(() => responseInfo(null), /status/);
});

test('connection failures are told from other errors', () => {
  assert.ok(isNetworkError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })));
  assert.ok(isNetworkError(new TypeError('fetch failed', { cause: Object.assign(new Error('y'), { code: 'ECONNRESET' }) })));
  assert.ok(isNetworkError(new DOMException('timed out', 'TimeoutError')));
  assert.ok(!isNetworkError(new Error('parse error')));
  assert.ok(!isNetworkError(null));
});
