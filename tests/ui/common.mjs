// What the UI scripts (e2e.mjs, tor.mjs) share: starting the app, starting Chromium, and a page
// whose errors are collected.

import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

/// How long a step may take.
export const DEADLINE = 30_000;

export function fail(message) {
  throw new Error(message);
}

// Runs `binary serve --no-browser --listen 127.0.0.1:0 …args` and waits for the launch URL on
// its standard output; `log` is its VEILSHARE_LOG.
export async function startApp(binary, args, log) {
  const started = Date.now();
  const child = spawn(binary, ['serve', '--no-browser', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, VEILSHARE_LOG: log },
  });
  const launch = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no launch URL within 30 s')), DEADLINE);
    let seen = '';
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      const match = seen.match(/Open (http:\/\/\S+\?launch=\S+)/);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    });
    child.on('exit', (code) => reject(new Error(`veilshare exited with ${code}`)));
  });
  return { child, launch, startMs: Date.now() - started };
}

// Debian's headless Chromium (or $CHROMIUM), with nothing that reaches the network by itself.
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// A new page of `browser` at `width` × `height`, and the errors it logs as they come.
export async function errorWatchedPage(browser, width, height) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  return { context, page, errors };
}
