/* global document, getComputedStyle, console, Chart */
// Page script of the saeflow report, inlined verbatim. Draws the charts described in the JSON block (specs made
// by src/report/charts.ts) with the inlined Chart.js, and makes tables sortable. No network, no HTML from data:
// every string from the data reaches the page through Chart.js canvas text or textContent only.
(() => {
  // Slots 0-2 have fixed meanings (frontier, L0, CE/activation); the rest is the Tableau 10 palette.
  const FIXED = ['#1f2937', '#2563eb', '#ea580c'];
  const CYCLE = [
    '#4e79a7',
    '#e15759',
    '#59a14f',
    '#b07aa1',
    '#76b7b2',
    '#edc948',
    '#ff9da7',
    '#9c755f',
    '#f28e2b',
  ];

  const color = (slot, alpha = 1) => {
    const hex = slot < FIXED.length ? FIXED[slot] : CYCLE[(slot - FIXED.length) % CYCLE.length];
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  };

  const fmtSi = (v) => {
    const a = Math.abs(v);
    if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}B`;
    if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
    if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
    return String(+v.toPrecision(3));
  };

  const fmtNum = (v) => {
    if (v === 0) return '0';
    const a = Math.abs(v);
    if (a < 1e-3 || a >= 1e6) return v.toExponential(2);
    return String(+v.toPrecision(4));
  };

  const tickFormatter = (spec) => {
    if (spec.ticks === 'si') return (v) => fmtSi(v);
    if (spec.log) {
      // Label only 1-2-5 ticks of each decade so a log axis stays legible.
      return (v) => {
        const m = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
        return [1, 2, 5].some((k) => Math.abs(m - k) < 1e-6) ? fmtNum(v) : '';
      };
    }
    return (v) => fmtNum(v);
  };

  const axis = (spec, position) => ({
    type: spec.log ? 'logarithmic' : 'linear',
    position,
    title: { display: true, text: spec.label, font: { weight: '600' } },
    min: spec.min,
    max: spec.max,
    grid: { color: '#eef0f3', drawOnChartArea: position !== 'right' },
    ticks:
      spec.ticks === 'int'
        ? { precision: 0, callback: (v) => (Number.isInteger(v) ? fmtNum(v) : '') }
        : { callback: tickFormatter(spec), maxRotation: 0 },
  });

  const xyConfig = (spec) => ({
    type: 'scatter',
    data: {
      datasets: spec.series.map((s) => ({
        label: s.label,
        data: s.points,
        showLine: s.line,
        borderColor: color(s.color),
        backgroundColor:
          s.emphasis && !s.line ? color(s.color) : s.emphasis ? 'rgba(0,0,0,0)' : color(s.color, 0.75),
        borderWidth: s.emphasis ? 2.5 : s.line ? 1.75 : 1,
        pointRadius: s.pointRadius,
        pointHoverRadius: s.pointRadius + 2,
        pointBorderWidth: s.emphasis ? 2 : 1,
        yAxisID: s.right ? 'y2' : 'y',
        order: s.emphasis ? 0 : 1,
      })),
    },
    options: {
      parsing: false,
      interaction: { mode: 'nearest', intersect: spec.series.every((s) => !s.line || s.pointRadius > 0) },
      scales: Object.assign(
        { x: axis(spec.x, 'bottom'), y: axis(spec.y, 'left') },
        spec.y2 ? { y2: axis(spec.y2, 'right') } : {},
      ),
      plugins: {
        legend: {
          display: spec.series.length > 1,
          position: 'bottom',
          labels: { usePointStyle: true, boxHeight: 8 },
        },
        tooltip: {
          callbacks: {
            label: (ctx) => {
              const p = ctx.raw;
              const yLabel = ctx.dataset.yAxisID === 'y2' ? spec.y2.label : spec.y.label;
              const who = p.name !== undefined ? p.name : ctx.dataset.label;
              return `${who}: ${spec.x.label} ${fmtNum(p.x)}, ${yLabel} ${fmtNum(p.y)}`;
            },
          },
        },
      },
    },
  });

  // Bars on a linear x axis (centred in their bins), so ticks fall on round values of the quantity rather than
  // on bin centres; with equal-width bins Chart.js sizes each bar to exactly one bin.
  const histogramConfig = (spec) => {
    const n = spec.counts.length;
    return {
      type: 'bar',
      data: {
        datasets: [
          {
            label: spec.y.label,
            data: spec.counts.map((c, i) => ({ x: (spec.edges[i] + spec.edges[i + 1]) / 2, y: c })),
            backgroundColor: color(spec.color, 0.7),
            borderWidth: 0,
            barPercentage: 1,
            categoryPercentage: 1,
          },
        ],
      },
      options: {
        parsing: false,
        scales: {
          x: {
            type: 'linear',
            offset: false,
            min: spec.edges[0],
            max: spec.edges[n],
            title: { display: true, text: spec.x.label, font: { weight: '600' } },
            grid: { display: false },
            ticks: { callback: (v) => fmtNum(v), maxRotation: 0, autoSkipPadding: 12, includeBounds: false },
          },
          y: {
            beginAtZero: true,
            title: { display: true, text: spec.y.label, font: { weight: '600' } },
            grid: { color: '#eef0f3' },
            ticks: { callback: (v) => fmtSi(v), precision: 0 },
          },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: (items) => {
                const i = items[0].dataIndex;
                return `${spec.x.label} in [${fmtNum(spec.edges[i])}, ${fmtNum(spec.edges[i + 1])})`;
              },
              label: (ctx) => `${ctx.raw.y.toLocaleString('en-US')} ${spec.y.label}`,
            },
          },
        },
      },
    };
  };

  const drawCharts = () => {
    const payload = JSON.parse(document.getElementById('report-data').textContent);
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = '#374151';
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
      const spec = payload.charts[canvas.dataset.chart];
      try {
        if (!spec) throw new Error(`no chart data for ${canvas.dataset.chart}`);
        new Chart(canvas, spec.type === 'histogram' ? histogramConfig(spec) : xyConfig(spec));
      } catch (err) {
        const note = document.createElement('p');
        note.className = 'empty';
        note.textContent = `Chart failed: ${err && err.message}`;
        canvas.parentElement.replaceWith(note);
        console.error(err);
      }
    }
  };

  // Sorting: numeric columns by the raw value in data-v, missing values last in either direction.
  const sortTable = (table, col, numeric, th) => {
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    for (const other of table.tHead.rows[0].cells) other.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    const body = table.tBodies[0];
    const key = (row) => {
      const cell = row.cells[col];
      const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
      if (raw === '') return null;
      return numeric ? Number(raw) : raw.toLowerCase();
    };
    const rows = Array.from(body.rows).map((row, i) => ({ row, i, k: key(row) }));
    rows.sort((a, b) => {
      if (a.k === null || b.k === null) return a.k === b.k ? a.i - b.i : a.k === null ? 1 : -1;
      if (a.k < b.k) return -dir;
      if (a.k > b.k) return dir;
      return a.i - b.i;
    });
    for (const r of rows) body.appendChild(r.row);
  };

  const makeSortable = () => {
    for (const table of document.querySelectorAll('table.sortable')) {
      Array.from(table.tHead.rows[0].cells).forEach((th, col) => {
        const numeric = th.dataset.sort === 'num';
        th.tabIndex = 0;
        th.addEventListener('click', () => sortTable(table, col, numeric, th));
        th.addEventListener('keydown', (ev) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            sortTable(table, col, numeric, th);
          }
        });
      });
    }
  };

  makeSortable();
  drawCharts();
})();
