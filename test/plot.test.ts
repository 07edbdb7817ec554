// The plots (src/plot/chart.ts): a chart description → Vega-Lite → Vega → SVG → PNG with resvg,
// text in a font file given explicitly. No lab: pure rendering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  axisTitle,
  DEFAULT_FONT,
  readFontMetrics,
  renderChart,
  vegaLiteSpec,
  type Chart,
} from '../src/plot/chart.js';
import { darkPixels, decodePng, PNG_SIGNATURE } from './helpers/png.js';

const CHART: Chart = {
  title: 'failover time vs clients, test figure',
  subtitle: 'two panels, one legend',
  panels: [
    {
      title: 'outage',
      x: { title: 'clients', log: true, ticks: [5, 20, 1000] },
      y: { title: 'outage', unit: 'ms', log: true },
      series: [
        {
          label: 'p99, ours',
          color: [200, 40, 40],
          width: 3,
          marker: 'circle',
          points: [
            { x: 5, y: 90 },
            { x: 20, y: 120 },
            { x: 1000, y: 700 },
          ],
        },
        {
          label: 'p50, ours',
          color: [200, 40, 40],
          dash: [6, 4],
          marker: 'square',
          // y = 0 cannot be drawn on a log axis: left out, not an error.
          points: [
            { x: 5, y: 0 },
            { x: 20, y: 60 },
            { x: 1000, y: 300 },
          ],
        },
      ],
      hlines: [{ y: 200, label: 'target p99', color: [20, 140, 60] }],
    },
    {
      title: 'throughput',
      x: { title: 'ARROW ISPs on the path', ticks: [0, 1, 2] },
      y: { title: 'TCP throughput', unit: 'Mb/s' },
      series: [
        {
          label: 'seed paper, avg',
          color: [120, 120, 120],
          dash: [3, 3],
          marker: 'diamond',
          points: [
            { x: 0, y: 9400 },
            { x: 1, y: 9100 },
            { x: 2, y: 8800 },
          ],
        },
      ],
    },
  ],
};

/** Text as Vega writes it into the SVG: one <text> element per string. */
function hasText(svg: string, text: string): boolean {
  const escaped = text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return svg.includes(`>${escaped}</text>`);
}

test('a two-panel chart renders to SVG with its texts and to a PNG of the width asked, text drawn', async () => {
  const { svg, png } = await renderChart(CHART);
  assert.match(svg, /^<svg /);
  for (const text of [
    'failover time vs clients, test figure',
    'two panels, one legend',
    'outage',
    'throughput',
    // Axis titles carry their units and say which scales are log.
    'clients (log scale)',
    'outage (ms, log scale)',
    'ARROW ISPs on the path',
    'TCP throughput (Mb/s)',
    // One legend for both panels, and the reference line's label beside it.
    'p99, ours',
    'p50, ours',
    'seed paper, avg',
    'target p99',
  ])
    assert.ok(hasText(svg, text), `the SVG has the text "${text}"`);
  assert.equal(svg.match(/role-legend"/g)?.length, 1, 'one legend');
  assert.ok(svg.includes('font-family="DejaVu Sans"'), 'the text is set in the font resvg is given');
  assert.ok(svg.includes('stroke-dasharray="6,4"'), 'the dashed series is dashed');
  assert.ok(svg.includes('stroke-dasharray="8,6"'), 'the reference line is dashed');
  assert.ok(!svg.includes('NaN'), 'no point was placed at NaN');

  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const img = decodePng(png);
  assert.equal(img.width, 1400, 'two panels: 1400 px wide by default');
  assert.ok(img.height > 400 && img.height < 1000, `height ${img.height} px`);
  // The title's band holds ink: the font was found and drawn (resvg silently leaves out text it
  // has no font for).
  assert.ok(darkPixels(img, 0, 45) > 500, `dark pixels in the title band: ${darkPixels(img, 0, 45)}`);

  const narrow = await renderChart({ ...CHART, width: 900 });
  assert.equal(decodePng(narrow.png).width, 900, 'the width asked for');
});

test('the Vega-Lite spec is plain data: log scales, one shared legend, reference lines as rules', () => {
  const spec = vegaLiteSpec(CHART, 'DejaVu Sans') as unknown as Record<string, unknown>;
  assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec, 'JSON round-trips: a browser can draw it');
  const json = JSON.stringify(spec);
  assert.ok(Array.isArray(spec.hconcat) && spec.hconcat.length === 2, 'two panels side by side');
  assert.deepEqual(spec.resolve, {
    scale: { color: 'shared', strokeDash: 'shared' },
    legend: { color: 'shared', strokeDash: 'shared' },
  });
  assert.match(json, /"type":"log"/);
  assert.match(json, /"type":"rule"/);
  assert.match(json, /"font":"DejaVu Sans"/);
  // Every series in the colour scale's domain, in order: the legend's entries.
  assert.match(json, /"domain":\["p99, ours","p50, ours","seed paper, avg"\]/);
  assert.equal(axisTitle({ title: 'RTT', unit: 'µs', log: true }), 'RTT (µs, log scale)');
  assert.equal(axisTitle({ title: 'trial' }), 'trial');
});

test('two series of one label drawn differently are an error, not a legend that lies', () => {
  const bad: Chart = {
    ...CHART,
    panels: [
      CHART.panels[0]!,
      { ...CHART.panels[1]!, series: [{ ...CHART.panels[0]!.series[0]!, color: [0, 0, 255] }] },
    ],
  };
  assert.throws(() => vegaLiteSpec(bad), /two series are labelled "p99, ours" but drawn differently/);
});

test('without its font the plot is a clear error, not a plot without text', async () => {
  await assert.rejects(
    renderChart(CHART, {
      family: 'Missing Sans',
      regular: '/nonexistent/MissingSans.ttf',
      bold: '/nonexistent/MissingSans-Bold.ttf',
    }),
    /font Missing Sans not found: no \/nonexistent\/MissingSans\.ttf.*fonts-dejavu-core/,
  );
  const dir = mkdtempSync(join(tmpdir(), 'arrow-plot-test-'));
  try {
    const junk = join(dir, 'junk.ttf');
    writeFileSync(junk, 'this is not a font, it only has a font name'.repeat(10));
    await assert.rejects(
      renderChart(CHART, { family: 'Junk', regular: junk, bold: junk }),
      /junk\.ttf: not a TrueType font Arrow can read \(truncated table directory\)/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('text is laid out with the font file’s own advance widths', () => {
  const m = readFontMetrics(DEFAULT_FONT.regular);
  const em = (s: string): number => [...s].reduce((w, ch) => w + m.advance(ch.codePointAt(0)!), 0);
  assert.ok(em('M') > em('i') * 2, `M ${em('M')} em is wider than i ${em('i')} em`);
  assert.ok(em('M') > 0.5 && em('M') < 1.2);
  assert.ok(em('µs') > 0, 'non-ASCII characters have widths too');
  const bold = readFontMetrics(DEFAULT_FONT.bold);
  assert.ok(bold.advance('a'.codePointAt(0)!) > m.advance('a'.codePointAt(0)!), 'bold is wider');
});
