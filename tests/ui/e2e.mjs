// End-to-end UI test in a real browser: Playwright (playwright-core) drives Debian's chromium
// against a build of the app with its UI embedded (`cargo xtask dist`'s one-file app, or the
// tests' debug build, which `cargo xtask test` uses). `cargo xtask test` runs it with
//   VEILSHARE_DIST=<target>/debug/veilshare  SCREENSHOTS=<target>/ui-screenshots
// It opens the launch URL, uploads a file through the drop zone's input, waits for the share to
// go live with its link and QR code, downloads from the public link, sees the download count
// change live, revokes, and sees the link stop working. Then it moves to "Receive files" with the
// keyboard, makes a drop box, uploads two files and a message through the box's public form in a
// second page with JavaScript off (Tor Browser's "Safest"), sees the upload appear on the card
// live, and saves a file through the card's link, then deletes the upload. A phone photo's GPS
// position is shown before it is shared and is gone from what recipients get. At 360 px nothing is wider than the window.
// Screenshots of the main screens go to SCREENSHOTS. Only 127.0.0.1 is contacted.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEADLINE, errorWatchedPage, fail, launchBrowser, startApp } from './common.mjs';

const binary = process.env.VEILSHARE_DIST;
const shots = process.env.SCREENSHOTS;
if (!binary || !shots) {
  throw new Error('set VEILSHARE_DIST and SCREENSHOTS (run it through `cargo xtask test`)');
}
mkdirSync(shots, { recursive: true });

const work = mkdtempSync(join(tmpdir(), 'veilshare-ui-'));
const file = join(work, 'field notes.bin');
const content = randomBytes(3 * 1024 * 1024 + 17);
writeFileSync(file, content);


async function fetchStatus(url) {
  const response = await fetch(url);
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, body };
}

const app = await startApp(binary, [
  '--no-tor', '--public-listen', '127.0.0.1:0', '--data-dir', join(work, 'data'),
], 'warn');
const browser = await launchBrowser();
let ok = false;
let page;
try {
  const watched = await errorWatchedPage(browser, 1000, 900);
  const { context, errors } = watched;
  page = watched.page;

  // The launch URL signs in and leaves the address bar without its code.
  const opened = Date.now();
  const landing = await page.goto(app.launch);
  const csp = (await landing.allHeaders())['content-security-policy'] ?? '';
  if (!csp.includes("script-src 'self' 'wasm-unsafe-eval'") || csp.includes('unsafe-inline')) {
    fail(`the UI page's CSP is not strict: ${csp}`);
  }
  await page.getByRole('heading', { name: 'Share files' }).waitFor({ timeout: DEADLINE });
  const uiMs = Date.now() - opened;
  if (page.url().includes('launch=')) fail(`the launch code stayed in the address bar: ${page.url()}`);
  // The WASM comes precompressed when the browser accepts brotli.
  const wasm = await page.request.get(new URL('/ui/veilshare_frontend_bg.wasm', page.url()).href, {
    headers: { 'accept-encoding': 'br' },
  });
  if (wasm.headers()['content-encoding'] !== 'br') fail('the WASM was not served brotli-compressed');
  await page.getByText('Tor is off').waitFor({ timeout: DEADLINE });
  await page.screenshot({ path: join(shots, '1-empty.png'), fullPage: true });

  // One file through the drop zone's file input, one dropped onto it; a limit of two downloads.
  await page.setInputFiles('#files', file);
  await page.getByText('field notes.bin').first().waitFor();
  const dropped = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(['read me first\n'], 'readme.txt', { type: 'text/plain' }));
    return transfer;
  });
  await page.dispatchEvent('.drop', 'dragover', { dataTransfer: dropped });
  await page.dispatchEvent('.drop', 'drop', { dataTransfer: dropped });
  await page.getByText('readme.txt').first().waitFor();
  await page.getByText('2 file(s)').waitFor();
  await page.fill('#max', '2');
  await page.dispatchEvent('#max', 'change');
  await page.fill('#label', 'Notes for Ana');
  await page.dispatchEvent('#label', 'change');
  await page.screenshot({ path: join(shots, '2-files-chosen.png'), fullPage: true });
  // Throttle the browser's uploads (DevTools network emulation) so that progress is visible.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 1024 * 1024,
  });
  await page.getByRole('button', { name: 'Share', exact: true }).click();
  const bar = page.locator('#upload-progress');
  await bar.waitFor({ timeout: DEADLINE });
  const seen = new Set();
  const uploadStarted = Date.now();
  while (await bar.count() > 0) {
    if (Date.now() - uploadStarted > DEADLINE) fail('the upload did not finish in time');
    const value = Number(await bar.getAttribute('value').catch(() => '0'));
    const max = Number(await bar.getAttribute('max').catch(() => '1'));
    if (max > 0) seen.add(Math.floor((value / max) * 10));
    if (seen.size === 1 && seen.has(0)) {
      await page.screenshot({ path: join(shots, '2b-uploading.png'), fullPage: true });
    }
    // Until the bar moves on (or is gone): no fixed pause.
    await page.waitForFunction(
      (previous) => {
        const now = document.querySelector('#upload-progress');
        return !now || Number(now.getAttribute('value')) !== previous;
      },
      value,
      { timeout: DEADLINE },
    );
  }
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  if (seen.size < 3) fail(`upload progress did not move: saw tenths ${[...seen]}`);

  const card = page.locator('li.card', { hasText: 'Notes for Ana' });
  await card.waitFor({ timeout: DEADLINE });
  await card.locator('.state', { hasText: 'live' }).waitFor({ timeout: DEADLINE });
  const link = (await card.locator('.link-value').first().textContent()).trim();
  if (!link.startsWith('http://127.0.0.1:')) fail(`unexpected link ${link}`);
  if (await card.locator('.qr svg').count() !== 1) fail('no QR code on the live share');
  await card.getByText('0 of 2 downloads').waitFor();
  await card.getByText('2 file(s)').waitFor();
  await page.screenshot({ path: join(shots, '3-live.png'), fullPage: true });

  // Download from the public link: same bytes; the count changes live, without a reload.
  // Every file of the share once: one complete download.
  const manifest = JSON.parse((await fetchStatus(`${link}manifest.json`)).body.toString());
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  const expected = { 'field notes.bin': sha(content), 'readme.txt': sha(Buffer.from('read me first\n')) };
  if (manifest.files.length !== 2) fail(`the share has ${manifest.files.length} files, not 2`);
  for (const entry of manifest.files) {
    const got = await fetchStatus(`${link}${entry.path}`);
    if (got.status !== 200) fail(`download of ${entry.name} answered ${got.status}`);
    if (sha(got.body) !== expected[entry.name]) fail(`${entry.name}: bytes differ from the upload`);
  }
  await card.getByText('1 of 2 downloads').waitFor({ timeout: DEADLINE });
  await page.screenshot({ path: join(shots, '4-downloaded.png'), fullPage: true });

  // Revoke, with the confirmation; the link stops working.
  await card.getByRole('button', { name: 'Revoke…' }).click();
  await page.screenshot({ path: join(shots, '5-confirm-revoke.png'), fullPage: true });
  await card.getByRole('button', { name: 'Yes, revoke' }).click();
  await card.locator('.state', { hasText: 'revoked' }).waitFor({ timeout: DEADLINE });
  const after = await fetchStatus(`${link}manifest.json`);
  if (after.status === 200) fail('the revoked link still answers');
  await page.screenshot({ path: join(shots, '6-revoked.png'), fullPage: true });

  // A phone photo: what it reveals shows as soon as it is chosen, before anything is shared;
  // the shared copy has none of it, and the card says what was removed.
  const photoPath = process.env.VEILSHARE_SAMPLE_PHOTO;
  if (!photoPath) fail('set VEILSHARE_SAMPLE_PHOTO (`cargo xtask test` makes the sample photo)');
  const photo = readFileSync(photoPath);
  await page.setInputFiles('#files', photoPath);
  const warning = page.locator('.picked .metadata', { hasText: 'GPS position' });
  await warning.waitFor({ timeout: DEADLINE });
  if (!(await warning.textContent()).includes('removes it from the shared copy')) {
    fail(`the warning does not say the metadata will be removed: ${await warning.textContent()}`);
  }
  if (!(await page.isChecked('#strip-metadata'))) fail('removing metadata is not on by default');
  await page.fill('#label', 'Holiday photo');
  await page.screenshot({ path: join(shots, '6b-metadata-warning.png'), fullPage: true });
  await page.getByRole('button', { name: 'Share', exact: true }).click();
  const photoCard = page.locator('li.card', { hasText: 'Holiday photo' });
  await photoCard.locator('.state', { hasText: 'live' }).waitFor({ timeout: DEADLINE });
  await photoCard.getByText('removed from the shared copy').waitFor();
  const photoLink = (await photoCard.locator('.link-value').first().textContent()).trim();
  const photoManifest = JSON.parse((await fetchStatus(`${photoLink}manifest.json`)).body.toString());
  const shared = await fetchStatus(`${photoLink}${photoManifest.files[0].path}`);
  if (shared.status !== 200 || shared.body[0] !== 0xff || shared.body[1] !== 0xd8) {
    fail(`the shared photo answered ${shared.status} or is not a JPEG`);
  }
  if (shared.body.includes('Fairphone') || shared.body.includes('SN-0042') || shared.body.length >= photo.length) {
    fail('the shared photo still carries its metadata');
  }
  // Its history: made, live, and the download just counted, with nothing about who fetched it.
  await photoCard.getByRole('button', { name: 'History' }).click();
  await photoCard.locator('ol.log li', { hasText: 'download #1 completed (plain link)' }).waitFor({ timeout: DEADLINE });
  await photoCard.getByText('this history is intact').waitFor();
  await page.screenshot({ path: join(shots, '6c-history.png'), fullPage: true });

  // Receive files: reached with the keyboard (the tabs move with the arrow keys).
  await page.getByRole('tab', { name: 'Share files' }).focus();
  await page.keyboard.press('ArrowRight');
  await page.getByRole('heading', { name: 'Receive files' }).waitFor({ timeout: DEADLINE });
  if (await page.getByRole('tab', { name: 'Receive files' }).getAttribute('aria-selected') !== 'true') {
    fail('the arrow key did not select "Receive files"');
  }
  // What is typed stays while the page redraws (here: for a share made through the API).
  await page.fill('#box-label', 'Tips for Ana');
  await page.fill('#box-max-file', '1 MB');
  const token = readFileSync(join(work, 'data', 'api-token'), 'utf8').trim();
  const body = new FormData();
  body.append('files', new Blob(['made elsewhere']), 'elsewhere.txt');
  body.append('label', 'Made through the API');
  const made = await fetch(new URL('/api/shares', page.url()), {
    method: 'POST', headers: { authorization: `Bearer ${token}` }, body,
  });
  if (made.status !== 201) fail(`the API did not make a share: ${made.status}`);
  await page.locator('li.card', { hasText: 'Made through the API' }).waitFor({ timeout: DEADLINE });
  for (const [field, typed] of [['#box-label', 'Tips for Ana'], ['#box-max-file', '1 MB']]) {
    const shown = await page.inputValue(field);
    if (shown !== typed) fail(`${field} lost what was typed when the page redrew: ${shown}`);
  }
  await page.screenshot({ path: join(shots, '7-new-dropbox.png'), fullPage: true });
  await page.getByRole('button', { name: 'Create drop box' }).click();
  const boxCard = page.locator('li.card', { hasText: 'Tips for Ana' });
  await boxCard.locator('.state', { hasText: 'live' }).waitFor({ timeout: DEADLINE });
  await boxCard.getByText('files up to 1.0 MiB').waitFor();
  await boxCard.getByText('stored as received, not encrypted').waitFor();
  const boxLink = (await boxCard.locator('.link-value').first().textContent()).trim();
  if (!boxLink.startsWith('http://127.0.0.1:')) fail(`unexpected drop box link ${boxLink}`);

  // The sender: another browser, JavaScript off, only the public link.
  const sender = await browser.newContext({ javaScriptEnabled: false });
  const form = await sender.newPage();
  const formResponse = await form.goto(boxLink);
  const formCsp = formResponse.headers()['content-security-policy'] ?? '';
  if (!formCsp.includes("form-action 'self'") || formCsp.includes('unsafe-inline')) {
    fail(`the drop box form's CSP is not strict: ${formCsp}`);
  }
  if ((await form.content()).toLowerCase().includes('<script')) fail('the drop box form has a script');
  const tip = randomBytes(200_000);
  const tipFile = join(work, 'tip one.pdf');
  writeFileSync(tipFile, tip);
  const noteFile = join(work, 'note.txt');
  writeFileSync(noteFile, 'second file\n');
  await form.setInputFiles('#file', [tipFile, noteFile]);
  await form.fill('#message', 'from a source');
  await form.screenshot({ path: join(shots, '8-dropbox-form.png'), fullPage: true });
  await form.getByRole('button', { name: 'Send' }).click();
  await form.getByText('2 files received, with your message').waitFor({ timeout: DEADLINE });
  await form.screenshot({ path: join(shots, '9-dropbox-received.png'), fullPage: true });
  await sender.close();

  // The owner's card shows it without a reload; its link gives the same bytes.
  await boxCard.getByText('from a source').waitFor({ timeout: DEADLINE });
  await boxCard.getByText('tip one.pdf').waitFor();
  await boxCard.getByText('1 upload,', { exact: false }).waitFor();
  const save = boxCard.locator('.items a[download]', { hasText: 'tip one.pdf' });
  const href = await save.getAttribute('href');
  const saved = await page.request.get(new URL(href, page.url()).href);
  if (saved.status() !== 200 || sha(await saved.body()) !== sha(tip)) {
    fail(`saving the received file gave ${saved.status()} or other bytes`);
  }
  await page.screenshot({ path: join(shots, '10-dropbox-item.png'), fullPage: true });

  // Deleting the upload: asked first, then its files are gone from the card and the API.
  const upload = boxCard.locator('li.item');
  await upload.getByRole('button', { name: 'Delete…' }).click();
  await upload.getByText('Delete this upload?').waitFor();
  await page.screenshot({ path: join(shots, '10b-dropbox-delete.png'), fullPage: true });
  await upload.getByRole('button', { name: 'Yes, delete' }).click();
  await boxCard.getByText('Nothing received yet.').waitFor({ timeout: DEADLINE });
  const gone = await page.request.get(new URL(href, page.url()).href);
  if (gone.status() !== 404) fail(`a deleted upload's file still answers ${gone.status()}`);

  // A narrow window still shows everything, without sideways scrolling.
  await page.setViewportSize({ width: 360, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 360) fail(`at 360 px the page is ${wide} px wide`);
  await page.screenshot({ path: join(shots, '11-narrow.png'), fullPage: true });

  if (errors.length) fail(`browser errors: ${errors.join('; ')}`);
  console.log(`UI e2e passed: started in ${app.startMs} ms, UI answered ${uiMs} ms after opening the launch URL; screenshots in ${shots}`);
  ok = true;
} finally {
  // What the page showed when it failed.
  if (!ok && page) await page.screenshot({ path: join(shots, 'failed.png'), fullPage: true }).catch(() => {});
  await browser.close();
  app.child.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
