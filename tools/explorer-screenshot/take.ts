// Retakes docs/explorer.png from a quickstart run, the way a reader gets there: saeflow-serve's server on the
// run, report.html, the k = 16 SAE's explorer link, a sentence of Moby-Dick, the first feature of the
// first token that has a dashboard. Same browser and flags as the explorer tests.
//
//   npx tsx tools/explorer-screenshot/take.ts runs/quickstart-XXXX [docs/explorer.png]
import { serveFolder } from '../../src/explorer/static-server.js';
import { launchChromium, openPage, runText, waitForExplorer } from '../../test/explorer-page.js';

const [run, out = 'docs/explorer.png'] = process.argv.slice(2);
if (!run) throw new Error('usage: npx tsx tools/explorer-screenshot/take.ts <quickstart run> [out.png]');
const TEXT =
  'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little ' +
  'and see the watery part of the world.';
const server = await serveFolder(run);
const browser = await launchChromium();
try {
  const opened = await openPage(browser, server, 'report.html', { explorer: false });
  await opened.page.setViewportSize({ width: 1200, height: 760 });
  await opened.page.locator('p.explorer a[href="explorer/topk-k16/explorer.html"]').click();
  await waitForExplorer(opened.page);
  await runText(opened.page, TEXT);
  const feature = opened.page.locator('#tokens tr.tok').first().locator('button.feat.has-dash').first();
  await feature.click();
  await opened.page.screenshot({ path: out });
  console.log(
    `${out}: feature ${await feature.getAttribute('data-feature')}; ${await opened.page.textContent('#about')}`,
  );
  if (opened.problems.length > 0) console.log(`page problems: ${opened.problems.join(' | ')}`);
} finally {
  await browser.close();
  await server.close();
}
