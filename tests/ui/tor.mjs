// The UI with Tor on, in a real browser, against the private Tor network on 127.0.0.1 that
// `cargo xtask test` starts. `cargo xtask test` runs it with
//   VEILSHARE_DIST=<target>/debug/veilshare  VEILSHARE_TESTNET=<arti.toml>  SCREENSHOTS=<dir>
// A share for two named recipients: each gets a link and a key of their own on the card; one is
// revoked from the card (after a confirmation) and their address stops answering, the other's
// does not; a third is added from the card and gets a link of their own. What a recipient
// fetches goes through C tor's SOCKS port (Tor Browser's path), with the recipient's key.
// Then the Get panel: a second instance shares a file over Tor (with a key) and directly; the
// UI fetches it by its onion link and key, showing progress, then by its direct ticket, and the
// saved bytes match.
// Then bridges: a wrong bridge line is reported by name in Tor's state, the network's obfs4 bridge
// (C tor + obfs4proxy) is then saved from the Bridges panel and the running app connects through it.
// Screenshots go to SCREENSHOTS. Only 127.0.0.1 is contacted.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { DEADLINE, errorWatchedPage, fail, launchBrowser, startApp } from './common.mjs';

const binary = process.env.VEILSHARE_DIST;
const shots = process.env.SCREENSHOTS;
const testnet = process.env.VEILSHARE_TESTNET;
if (!binary || !shots || !testnet) {
  throw new Error('set VEILSHARE_DIST, VEILSHARE_TESTNET and SCREENSHOTS (run it through `cargo xtask test`)');
}
mkdirSync(shots, { recursive: true });
// Publishing an onion service on the test network takes seconds; allow for a slow machine.
const PUBLISH = 150_000;

const work = mkdtempSync(join(tmpdir(), 'veilshare-ui-tor-'));
const file = join(work, 'for named eyes.txt');
writeFileSync(file, 'only for the people named on the card\n');

// Starts an app on the test network (data under `name`; direct sharing on 127.0.0.1 only).
async function startTorApp(name = 'data') {
  const dataDir = join(work, name);
  const app = await startApp(binary, [
    '--tor-config', testnet, '--no-iroh-relay', '--iroh-bind', '127.0.0.1:0', '--data-dir', dataDir,
  ], 'error');
  return { ...app, dataDir };
}

// Creates a share through an app's local API (the CLI's way in: its token).
async function createShare(app, name, bytes, fields) {
  const { api } = JSON.parse(readFileSync(join(app.dataDir, 'instance.json'), 'utf8'));
  const token = readFileSync(join(app.dataDir, 'api-token'), 'utf8').trim();
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append('files', new Blob([bytes]), name);
  const response = await fetch(`${api}/api/shares`, { method: 'POST', body: form, headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) fail(`cannot create a share: ${response.status} ${await response.text()}`);
  const view = await response.json();
  // Until its onion service answers.
  const started = Date.now();
  for (;;) {
    const now = await (await fetch(`${api}/api/shares/${view.id}`, { headers: { authorization: `Bearer ${token}` } })).json();
    if (now.state === 'live') return now;
    if (Date.now() - started > PUBLISH) fail(`the sender's share did not go live: ${JSON.stringify(now)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// A C tor client on the test network (Tor Browser's tor), with a SOCKS and a control port.
async function startCTor() {
  const dir = join(work, 'ctor');
  mkdirSync(dir, { mode: 0o700 });
  const [socks, control] = [await freePort(), await freePort()];
  const base = readFileSync(join(dirname(testnet), 'client-torrc'), 'utf8');
  const torrc = join(dir, 'torrc');
  writeFileSync(torrc, `${base}DataDirectory ${dir}\nSocksPort 127.0.0.1:${socks}\nControlPort 127.0.0.1:${control}\nLog notice stdout\n`);
  const child = spawn('tor', ['--defaults-torrc', '/dev/null', '-f', torrc], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('C tor did not bootstrap within 120 s')), 120_000);
    let seen = '';
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('Bootstrapped 100%')) { clearTimeout(timer); resolve(); }
    });
    child.on('exit', (code) => reject(new Error(`C tor exited with ${code}`)));
  });
  return { child, socks, control };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

// Gives C tor the key of a restricted onion address (what Tor Browser's key prompt does), over
// its control port.
async function authorize(ctor, host, key) {
  const address = host.replace(/\.onion$/, '');
  // The control port takes the key in base64; veilshare shows it in base32 (Tor Browser's form).
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of key.toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = Buffer.from(bits.match(/.{8}/g).slice(0, 32).map((b) => parseInt(b, 2)));
  const reply = await new Promise((resolve, reject) => {
    const socket = connect(ctor.control, '127.0.0.1');
    let seen = '';
    socket.on('data', (chunk) => { seen += chunk; });
    socket.on('end', () => resolve(seen));
    socket.on('error', reject);
    socket.write(`AUTHENTICATE\r\nONION_CLIENT_AUTH_ADD ${address} x25519:${bytes.toString('base64')}\r\nQUIT\r\n`);
  });
  const lines = reply.split('\r\n').filter(Boolean);
  // AUTHENTICATE, then the key (251: it replaced one given before), then QUIT.
  if (!/^25[01] /.test(lines[1] ?? '')) fail(`C tor refused the key: ${reply}`);
}

// Fetches `path` of an onion link through C tor (curl over its SOCKS port, which is how Tor
// Browser reaches it) with the recipient's key. Returns the HTTP status, or 0 when the address
// could not be reached within `seconds`.
async function fetchOverTor(ctor, link, key, path, seconds) {
  const host = new URL(link).host;
  await authorize(ctor, host, key);
  const curl = spawn('curl', [
    '--silent', '--output', '/dev/null', '--write-out', '%{http_code}',
    '--max-time', String(seconds), '--socks5-hostname', `127.0.0.1:${ctor.socks}`, `http://${host}/${path}`,
  ], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  curl.stdout.on('data', (chunk) => { out += chunk; });
  await new Promise((resolve) => curl.on('exit', resolve));
  return Number(out) || 0;
}

const app = await startTorApp();
const ctor = await startCTor();
const others = [];
const browser = await launchBrowser();
let ok = false;
let page;
try {
  const watched = await errorWatchedPage(browser, 1000, 1100);
  const { errors } = watched;
  page = watched.page;
  await page.goto(app.launch);
  await page.getByRole('heading', { name: 'Share files' }).waitFor({ timeout: DEADLINE });
  await page.getByText('Connected to Tor').waitFor({ timeout: PUBLISH });

  // Two named recipients.
  await page.setInputFiles('#files', file);
  await page.getByText('for named eyes.txt').first().waitFor();
  await page.fill('#label', 'For the two of them');
  await page.check('#restricted');
  await page.fill('#recipients', 'alice, bob');
  await page.screenshot({ path: join(shots, '12-recipients-form.png'), fullPage: true });
  await page.getByRole('button', { name: 'Share', exact: true }).click();
  const card = page.locator('li.card', { hasText: 'For the two of them' });
  await card.waitFor({ timeout: DEADLINE });
  await card.locator('.card-head .state', { hasText: 'live' }).first().waitFor({ timeout: PUBLISH });
  const person = (name) => card.locator('li.recipient', { has: page.locator('strong', { hasText: name }) });
  const linkAndKey = async (name) => {
    const values = person(name).locator('.link-value');
    await values.nth(1).waitFor({ timeout: PUBLISH });
    return [(await values.nth(0).textContent()).trim(), (await values.nth(1).textContent()).trim()];
  };
  const [aliceLink, aliceKey] = await linkAndKey('alice');
  const [bobLink, bobKey] = await linkAndKey('bob');
  if (aliceLink === bobLink || aliceKey === bobKey) fail('alice and bob share a link or a key');
  if (!/^http:\/\/[a-z2-7]{56}\.onion\/$/.test(aliceLink)) fail(`alice's link: ${aliceLink}`);
  await page.screenshot({ path: join(shots, '13-recipients-live.png'), fullPage: true });
  if (await fetchOverTor(ctor, aliceLink, aliceKey, 'manifest.json', 120) !== 200) fail("alice's link did not answer");

  if (await fetchOverTor(ctor, bobLink, bobKey, 'manifest.json', 120) !== 200) fail("bob's link did not answer");

  // Bob is revoked from the card, after a confirmation.
  await person('bob').getByRole('button', { name: 'Revoke bob' }).click();
  await person('bob').getByText('Revoke bob? Their link and key stop working for good').waitFor();
  await page.screenshot({ path: join(shots, '14-recipient-confirm-revoke.png'), fullPage: true });
  await person('bob').getByRole('button', { name: 'Yes, revoke' }).click();
  await person('bob').getByText('Revoked: their link and key no longer reach this share.').waitFor({ timeout: DEADLINE });
  if (await person('bob').locator('.link-value').count() !== 0) fail("bob's link is still shown");
  if (await fetchOverTor(ctor, bobLink, bobKey, 'manifest.json', 20) === 200) fail("bob's link answered after his revocation");
  if (await fetchOverTor(ctor, aliceLink, aliceKey, 'manifest.json', 120) !== 200) fail("alice's link stopped with bob's");

  // Carol is added from the card and gets her own link.
  await card.getByLabel("New recipient's name").fill('carol');
  await card.getByRole('button', { name: 'Add recipient' }).click();
  await person('carol').locator('.state', { hasText: 'live' }).waitFor({ timeout: PUBLISH });
  const [carolLink, carolKey] = await linkAndKey('carol');
  if ([aliceLink, bobLink].includes(carolLink)) fail("carol got someone else's link");
  if (await fetchOverTor(ctor, carolLink, carolKey, 'manifest.json', 120) !== 200) fail("carol's link did not answer");
  await person('carol').getByRole('button', { name: 'QR code' }).click();
  if (await person('carol').locator('.qr svg').count() !== 1) fail("no QR code for carol's link");
  await page.screenshot({ path: join(shots, '15-recipient-added.png'), fullPage: true });

  // The Get panel: fetch another instance's share by its onion link and key, then by ticket.
  const sender = await startTorApp('sender');
  others.push(sender);
  const sent = randomBytes(24 * 1024 * 1024 + 5);
  const shared = await createShare(sender, 'evidence.bin', sent, { restricted: 'true' });
  const downloads = join(work, 'Downloads');
  mkdirSync(downloads);
  await page.getByRole('tab', { name: 'Get files' }).click();
  await page.getByRole('button', { name: 'Change folder' }).click();
  await page.fill('#get-folder', downloads);
  await page.getByRole('button', { name: 'Use this folder' }).click();
  await page.getByText(`Saved into ${downloads}`).waitFor({ timeout: DEADLINE });
  await page.fill('#get-sources', shared.links.onion);
  await page.fill('#get-key', shared.client_key);
  await page.screenshot({ path: join(shots, '16-get-form.png'), fullPage: true });
  await page.getByRole('button', { name: 'Get', exact: true }).click();
  const fetching = page.locator('li.get-card', { hasText: 'evidence.bin' });
  await fetching.waitFor({ timeout: PUBLISH });
  // Progress shows while the bytes arrive (a bar, bytes of the total), then the saved path.
  let sawProgress = false;
  const got = Date.now();
  while (await fetching.locator('.state', { hasText: 'saved' }).count() === 0) {
    if (Date.now() - got > PUBLISH) fail('the fetch over Tor did not finish');
    const bar = fetching.locator('progress');
    const [value, max] = await bar.count() > 0
      ? [Number(await bar.getAttribute('value').catch(() => '0')), Number(await bar.getAttribute('max').catch(() => '0'))]
      : [0, 0];
    if (!sawProgress && value > 0 && value < max
        && /of 24\.0 MiB/.test(await fetching.locator('.progress-line').textContent().catch(() => ''))) {
      sawProgress = true;
      await page.screenshot({ path: join(shots, '17-get-progress.png'), fullPage: true });
    }
    await page.waitForTimeout(50);
  }
  if (!sawProgress) fail('no progress was shown while the share arrived');
  await fetching.getByText('Saved and verified:').waitFor();
  await page.screenshot({ path: join(shots, '18-get-saved.png'), fullPage: true });
  if (!readFileSync(join(downloads, 'evidence.bin')).equals(sent)) fail('the saved bytes differ from the shared ones');
  // Other content of the same name, by a direct ticket: saved beside it under a new name.
  const other = randomBytes(3 * 1024 * 1024 + 1);
  const direct = await createShare(sender, 'evidence.bin', other, { direct: 'true' });
  await page.fill('#get-sources', direct.links.ticket);
  await page.getByRole('button', { name: 'Get', exact: true }).click();
  await page.locator('li.get-card .state', { hasText: 'saved' }).nth(1).waitFor({ timeout: PUBLISH });
  if (!readFileSync(join(downloads, 'evidence (1).bin')).equals(other)) fail('the bytes fetched by ticket differ');
  if (!readFileSync(join(downloads, 'evidence.bin')).equals(sent)) fail('the first copy was changed');

  // Bridges: a wrong line first (its bridge is reported as failed, by name, in the badge), then
  // the private network's obfs4 bridge; the running app reconnects through it.
  const bridgeLine = readFileSync(join(dirname(testnet), 'bridge-obfs4'), 'utf8').trim();
  const wrongLine = bridgeLine
    .replace(/127\.0\.0\.1:\d+ /, `127.0.0.1:${await freePort()} `)
    .replace(/ [0-9A-F]{40} /, ` ${'AB'.repeat(20)} `);
  await page.getByRole('button', { name: 'Bridges' }).click();
  await page.locator('#bridges-title').waitFor();
  await page.check('#bridges-on');
  await page.check('#bridge-kind-obfs4');
  if (!/found: .*obfs4proxy/.test(await page.locator('label[for=bridge-program]').textContent())) fail('the obfs4 program was not found on PATH');
  await page.fill('#bridge-lines', 'not a bridge line');
  const before = errors.length;
  await page.getByRole('button', { name: 'Save and connect' }).click();
  await page.locator('#bridges-panel .problem', { hasText: 'bridge line 1' }).waitFor();
  // Only the server knows Arti's bridge-line rules: its 400 is the expected answer, which
  // the browser logs as a failed resource; nothing else may have been logged meanwhile.
  const logged = errors.splice(before);
  if (logged.length !== 1 || !/status of 400/.test(logged[0])) fail(`errors around the refused line: ${logged.join('; ')}`);
  await page.fill('#bridge-lines', wrongLine);
  await page.getByRole('button', { name: 'Save and connect' }).click();
  await page.locator('header .badge', { hasText: '1 of 1 bridges failed' }).waitFor({ timeout: PUBLISH });
  await page.locator('.bridge-states li.problem').waitFor();
  await page.screenshot({ path: join(shots, '19-bridges-failed.png'), fullPage: true });
  await page.fill('#bridge-lines', `# the test network's bridge\n${bridgeLine}\n`);
  await page.getByRole('button', { name: 'Save and connect' }).click();
  await page.locator('header .badge', { hasText: 'Connected to Tor through obfs4 bridges' }).waitFor({ timeout: PUBLISH });
  await page.locator('.bridge-states li', { hasText: 'connected' }).waitFor({ timeout: PUBLISH });
  await page.screenshot({ path: join(shots, '20-bridges.png'), fullPage: true });
  const saved = JSON.parse(readFileSync(join(app.dataDir, 'bridges.json'), 'utf8'));
  if (!saved.enabled || saved.lines.length !== 1 || saved.lines[0] !== bridgeLine) fail(`bridges.json: ${JSON.stringify(saved)}`);

  if (errors.length) fail(`the page logged errors: ${errors.join('; ')}`);
  ok = true;
  console.log('UI over Tor: named recipients shared, one revoked, one added; a share fetched in the app by onion link and by ticket; bridges set, a wrong one reported, the right one used');
} finally {
  if (!ok && page) await page.screenshot({ path: join(shots, 'failed-tor.png'), fullPage: true }).catch(() => {});
  await browser.close();
  app.child.kill('SIGTERM');
  ctor.child.kill('SIGTERM');
  for (const other of others) other.child.kill('SIGTERM');
}
if (!ok) process.exit(1);
