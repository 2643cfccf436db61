// herd web UI. One script for every page: body[data-page] says which part
// runs. Pages are filled from the API's live views (Server-Sent Events); no
// part of the page polls. Every state-changing request carries the session's
// CSRF token. No framework: DOM built with el(), never from HTML strings.
'use strict';

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || '';

// el builds an element: el('a', {href: '/x', class: 'c'}, 'text', child).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP, unlike style attributes
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

function fill(parent, kids) { parent.replaceChildren(...kids); }

// api calls herd's API with the session cookie and CSRF token; it throws
// an Error carrying the server's message.
async function api(method, url, body) {
  const opt = {method, credentials: 'same-origin', headers: {'X-CSRF-Token': csrf}};
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(url, opt);
  if (r.status === 401) { location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search); throw new Error('signed out'); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error(data?.error?.message || `${r.status} ${r.statusText}`);
  return data;
}

// live opens the event stream of a view and calls onData with each version.
// A hidden tab closes its stream (browsers allow only a few connections per
// server over HTTP/1.1) and opens it again when shown.
function live(params, onData, onGone) {
  const status = document.getElementById('live');
  const name = params.view || 'jobs';
  let es = null;
  const open = () => {
    es = new EventSource('/api/v1/events?' + new URLSearchParams(params));
    es.addEventListener(name, (e) => { if (status) status.textContent = 'live'; onData(JSON.parse(e.data)); });
    es.addEventListener('gone', () => { es.close(); onGone?.(); });
    es.onerror = () => {
      if (status) status.textContent = 'reconnecting…';
      // A refused stream does not come back by itself: say why.
      fetch('/api/v1/dashboard', {credentials: 'same-origin'}).then((r) => {
        if (r.status === 401) location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
        else if (es.readyState === EventSource.CLOSED) { onGone ? onGone() : flash('The live view was refused; reload the page.'); }
      });
    };
  };
  const onVis = () => {
    if (document.hidden) { es?.close(); es = null; } else if (!es) open();
  };
  document.addEventListener('visibilitychange', onVis);
  open();
  return {close() { document.removeEventListener('visibilitychange', onVis); es?.close(); }};
}

const fmt = {
  bytes(n) {
    if (!n) return '0 B';
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    const i = Math.min(u.length - 1, Math.floor(Math.log(n) / Math.log(1000)));
    return (n / 1000 ** i).toFixed(i ? 1 : 0) + ' ' + u[i];
  },
  dur(s) {
    if (s === undefined || s === null || !isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + ':' + String(m).padStart(2, '0') : m) + ':' + String(sec).padStart(2, '0');
  },
  speed(x) { return x ? x.toFixed(x < 10 ? 2 : 1) + '×' : '–'; },
  bitrate(b) { return b ? (b >= 1e6 ? (b / 1e6).toFixed(2) + ' Mb/s' : Math.round(b / 1e3) + ' kb/s') : '–'; },
  pct(p) { return Math.round((p || 0) * 100) + '%'; },
  time(t) { return t ? new Date(t).toLocaleString() : '–'; },
  ago(t) {
    if (!t) return 'never';
    const s = (Date.now() - new Date(t).getTime()) / 1000;
    if (s < 60) return Math.max(0, Math.round(s)) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return new Date(t).toLocaleDateString();
  },
};

function stateBadge(state) { return el('span', {class: 'state ' + state}, state); }

// What a job does: its profile, or the health check of a library (jobview.What).
function what(j) { return j.source.library ? `health check (${j.source.library})` : j.profile; }

function flash(msg) {
  let box = document.getElementById('flash');
  if (!box) {
    box = el('p', {id: 'flash', class: 'error', role: 'alert'});
    document.querySelector('main').prepend(box);
  }
  box.textContent = msg;
}

// jobActions are the buttons a job in this state offers.
function jobActions(j) {
  const act = (what) => async (e) => {
    e.target.disabled = true;
    try { await api('POST', `/api/v1/jobs/${j.id}/${what}`); } catch (err) { flash(`Could not ${what} ${j.source.name}: ${err.message}`); e.target.disabled = false; }
  };
  const out = [];
  if (j.state === 'queued' || j.state === 'running') out.push(el('button', {type: 'button', class: 'danger', onclick: act('cancel'), 'aria-label': 'Cancel ' + j.source.name}, 'Cancel'));
  if ((j.state === 'failed' || j.state === 'canceled') && !j.source.library) out.push(el('button', {type: 'button', onclick: act('retry'), 'aria-label': 'Retry ' + j.source.name}, 'Retry'));
  return out;
}

const pages = {};

pages.dashboard = () => {
  live({view: 'dashboard'}, (d) => {
    document.getElementById('d-queued').textContent = d.queue.queued_tasks;
    document.getElementById('d-running').textContent = d.queue.running_tasks;
    document.getElementById('d-backlog').textContent = fmt.dur(d.queue.encode_backlog_seconds);
    document.getElementById('d-speed').textContent = fmt.speed(d.encode_speed);
    document.getElementById('d-workers').textContent = d.workers;
    fill(document.getElementById('d-states'), ['queued', 'running', 'succeeded', 'failed', 'canceled'].map((s) =>
      el('li', {}, el('a', {href: '/jobs?state=' + s}, stateBadge(s)), ' ', String(d.jobs_by_state?.[s] || 0))));
    const peak = Math.max(1, ...d.hours.map((h) => h.succeeded + h.failed));
    fill(document.getElementById('d-hours'), d.hours.map((h) => {
      const label = `${new Date(h.hour).getHours()}:00 — ${h.succeeded} succeeded, ${h.failed} failed` + (h.speed ? `, ${fmt.speed(h.speed)}` : '');
      return el('div', {class: 'bar', title: label},
        el('div', {class: 'ok', style: {height: `${(100 * h.succeeded) / peak}%`}}),
        el('div', {class: 'bad', style: {height: `${(100 * h.failed) / peak}%`}}));
    }));
    const fails = d.recent_failures.map((j) => el('li', {}, el('a', {href: '/jobs/' + j.id}, j.source.name), ' — ', j.error || 'failed', ' ', el('span', {class: 'muted'}, fmt.ago(j.finished_at))));
    fill(document.getElementById('d-failures'), fails.length ? fails : [el('li', {class: 'muted'}, 'None.')]);
  });
};

pages.jobs = () => {
  const form = document.getElementById('filters');
  const rows = document.getElementById('job-rows');
  const q = new URLSearchParams(location.search);
  form.state.value = q.get('state') || '';
  form.profile.value = q.get('profile') || '';
  let es;
  const open = () => {
    es?.close();
    const params = {view: 'jobs', limit: '100'};
    if (form.state.value) params.state = form.state.value;
    if (form.profile.value) params.profile = form.profile.value;
    const url = new URLSearchParams(params);
    url.delete('view'); url.delete('limit');
    history.replaceState(null, '', '/jobs' + (url.toString() ? '?' + url : ''));
    es = live(params, (d) => {
      if (!d.jobs.length) { fill(rows, [el('tr', {}, el('td', {colspan: 8, class: 'muted'}, 'No jobs yet. ', el('a', {href: '/upload'}, 'Upload a video')))]); return; }
      fill(rows, d.jobs.map((j) => el('tr', {dataset: {job: j.id, state: j.state}},
        el('td', {class: 'name'}, el('a', {href: '/jobs/' + j.id}, j.source.name)),
        el('td', {}, what(j)),
        el('td', {}, stateBadge(j.state), j.error ? el('div', {class: 'muted'}, j.error) : null),
        el('td', {}, el('progress', {max: 1, value: j.progress, 'aria-label': 'progress of ' + j.source.name}), ' ', fmt.pct(j.progress)),
        el('td', {class: 'num'}, j.state === 'running' ? fmt.speed(j.speed) : '–'),
        el('td', {class: 'num'}, j.eta_seconds !== undefined ? fmt.dur(j.eta_seconds) : '–'),
        el('td', {}, fmt.ago(j.created_at)),
        el('td', {}, jobActions(j)))));
    });
  };
  form.addEventListener('change', open);
  open();
};

// awaitLive resolves to the live master playlist's URL once it answers
// (the encode has finished a segment of every rendition), or to '' once
// url() says the job has none any more.
async function awaitLive(url) {
  for (let u = url(); u; u = url()) {
    try {
      const r = await fetch(u, {credentials: 'same-origin', cache: 'no-store'});
      if (r.ok) return u;
    } catch (e) { /* the server is away: ask again */ }
    await new Promise((ok) => setTimeout(ok, 2000));
  }
  return '';
}

pages.job = () => {
  const id = document.body.dataset.job;
  let player = null, liveURL = '', awaiting = false;
  live({view: 'job', id}, (j) => {
    document.title = j.source.name + ' · herd';
    document.getElementById('j-title').textContent = j.source.name;
    fill(document.getElementById('j-state'), [stateBadge(j.state)]);
    document.getElementById('j-state').dataset.state = j.state;
    document.getElementById('j-profile').textContent = what(j) + (j.check ? ': ' + j.check.state + (j.check.note ? ' (' + j.check.note + ')' : '') : '');
    document.getElementById('j-progress').value = j.progress;
    document.getElementById('j-progress-text').textContent = fmt.pct(j.progress) + (j.state === 'running' && j.speed ? ` at ${fmt.speed(j.speed)}` : '') +
      (j.eta_seconds !== undefined ? `, about ${fmt.dur(j.eta_seconds)} left` : '');
    fill(document.getElementById('j-actions'), jobActions(j));
    const errBox = document.getElementById('j-error');
    errBox.hidden = !j.error;
    errBox.textContent = j.error ? j.error + (j.error_code ? ` (${j.error_code})` : '') : '';
    const waitBox = document.getElementById('j-waiting');
    waitBox.hidden = !j.waiting;
    waitBox.textContent = j.waiting || '';
    const repl = document.getElementById('j-replaced');
    repl.hidden = !j.replaced_by && !j.replaces;
    fill(repl, [
      ...(j.replaces ? ['Made to replace ', el('a', {href: '/jobs/' + j.replaces}, j.replaces), ' (a re-encode campaign). '] : []),
      ...(j.replaced_by ? ['Replaced by ', el('a', {href: '/jobs/' + j.replaced_by}, j.replaced_by), ` on ${fmt.time(j.replaced_at)}`,
        j.outputs_removed_at ? `; its files were removed on ${fmt.time(j.outputs_removed_at)}.` : '; its files are kept for a while so that players already playing them finish.'] : []),
    ]);
    const s = j.source;
    fill(document.getElementById('j-source'), [
      ['File', s.name], ['Size', fmt.bytes(s.size)], ['Duration', s.duration ? fmt.dur(s.duration) : '–'],
      ['Picture', s.width ? `${s.width}×${s.height}` : '–'], ['Video codec', s.video_codec || '–'],
      ['Audio channels', s.audio_channels || '–'], ['SHA-256', s.sha256], ['Created', fmt.time(j.created_at)],
      ['Finished', fmt.time(j.finished_at)], ['Attempts', j.attempts],
      ...(j.watch ? [['Watched file', `${j.watch.file} in ${j.watch.folder}`]] : []),
      ...(j.labels ? [['Labels', Object.entries(j.labels).map(([k, v]) => `${k}=${v}`).join(', ')]] : []),
      ...(j.publish ? [['Publishers', j.publish.join(', ')]] : []),
    ].flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, String(v))]));
    const outs = j.outputs || [];
    fill(document.getElementById('j-outputs'), outs.length ? outs.map((o) => el('tr', {dataset: {output: o.name}},
      el('td', {}, o.name), el('td', {}, o.kind), el('td', {}, o.width ? `${o.width}×${o.height}` : '–'),
      el('td', {class: 'num'}, fmt.bitrate(o.bitrate)), el('td', {class: 'num'}, fmt.bytes(o.size)), el('td', {}, o.codec || '–'),
      el('td', {class: 'num'}, o.ssim ? o.ssim.toFixed(4) : '–'), el('td', {class: 'num'}, o.psnr ? o.psnr.toFixed(1) + ' dB' : '–'),
      el('td', {class: 'num', title: o.vmaf ? `mean ${o.vmaf.mean}, 5th percentile ${o.vmaf.low}, ${o.vmaf.frames} frames, model ${o.vmaf.model}` : ''},
        o.vmaf ? `${o.vmaf.mean.toFixed(1)} (low ${o.vmaf.low.toFixed(1)})` : '–'),
      el('td', {}, el('a', {href: o.url, download: o.path.split('/').pop()}, 'Download')))) : [el('tr', {}, el('td', {colspan: 10, class: 'muted'}, j.state === 'succeeded' ? 'No outputs.' : 'None yet.'))]);
    showAudio(j, outs);
    showSearch(j, outs);
    showChunks(j.tasks || []);
    fill(document.getElementById('j-tasks'), (j.tasks || []).map((t) => el('tr', {dataset: {task: t.kind}},
      el('td', {}, t.chunk ? `${t.kind} ${t.chunk}` : t.kind), el('td', {}, stateBadge(t.state)), el('td', {class: 'num'}, t.attempt), el('td', {}, t.worker || '–'),
      el('td', {}, el('progress', {max: 1, value: t.progress, 'aria-label': t.kind + ' progress'})),
      el('td', {}, fmt.time(t.started_at)),
      el('td', {class: 'num'}, t.started_at && t.finished_at ? fmt.dur((new Date(t.finished_at) - new Date(t.started_at)) / 1000) : '–'),
      el('td', {class: 'muted'}, t.error || ''))));
    const dels = j.deliveries || [];
    document.getElementById('j-deliveries-box').hidden = !dels.length;
    fill(document.getElementById('j-deliveries'), dels.map((d) => el('li', {}, `${d.publisher} (${d.type}) ${d.event} attempt ${d.attempt}: `, d.ok ? 'ok' : 'failed', d.detail ? ' — ' + d.detail : '')));
    const log = (j.tasks || []).flatMap((t) => [
      ...t.commands.map((c) => `[${t.kind}] ${c.join(' ')}`),
      ...(t.error ? [`[${t.kind}] error: ${t.error}`] : []),
    ]);
    document.getElementById('j-log-box').hidden = !log.length;
    document.getElementById('j-log').textContent = log.join('\n');
    if (!player && j.state === 'succeeded' && outs.length) player = setupPlayer(outs);
    else if (player?.live && j.state === 'succeeded' && outs.length) player.finish(outs);
    liveURL = j.live || '';
    if (!player && liveURL && !awaiting) {
      // The encode hands its segments over as it makes them: play them
      // from the job's live playlist as soon as there is one.
      awaiting = true;
      awaitLive(() => liveURL).then((url) => { awaiting = false; if (url && !player) player = setupPlayer([], url); });
    }
    document.getElementById('share-box').hidden = j.state !== 'succeeded';
  }, () => flash('There is no such job (it may have been removed).'));
  setupShare(id);
};

// setupShare makes the Share form ask for a signed playback link
// (POST /api/v1/jobs/{id}/links) and show it, ready to copy.
function setupShare(id) {
  const form = document.getElementById('share-form');
  const out = document.getElementById('share-out');
  const url = document.getElementById('share-url');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const l = await api('POST', `/api/v1/jobs/${encodeURIComponent(id)}/links`, {ttl: document.getElementById('share-ttl').value});
      url.value = l.url;
      document.getElementById('share-exp').textContent = fmt.time(l.expires_at);
      document.getElementById('share-embed').textContent = `<iframe src="${l.url}" width="640" height="400" allow="fullscreen" title="video"></iframe>`;
      out.hidden = false;
      url.select();
    } catch (err) {
      flash('Could not make a link: ' + err.message);
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById('share-copy').addEventListener('click', async () => {
    try { await navigator.clipboard.writeText(url.value); } catch (_) { url.select(); document.execCommand('copy'); }
  });
}

// chunkLabel says what one chunk cell shows: "chunk 3: running, w1, 2.50×,
// attempt 2". It says what chunkLabel in jobpage.go says for the first paint.
function chunkLabel(t) {
  const parts = [t.state];
  if (t.worker) parts.push(t.worker);
  if (t.state === 'running' && t.speed > 0) parts.push(fmt.speed(t.speed));
  if (t.attempt > 0) parts.push('attempt ' + t.attempt);
  return `chunk ${t.chunk}: ${parts.join(', ')}`;
}

// showChunks keeps the strip of a chunked job's chunks (built first by
// job.html) up to date: one cell per chunk in order, its fill the chunk's
// progress, its class the chunk's state, a badge from its second attempt
// on. Cells are updated in place, so a tooltip being read stays open.
// showAudio lists the plan's audio tracks (the source's loudness, the gain
// planned, the loudness verification measured on each rendition), its
// subtitle tracks (from the source's streams or a subtitle file given with
// it) and its notes: what of the source the outputs leave out.
function showAudio(j, outs) {
  const pl = j.plan || {}, tracks = pl.audio || [], notes = pl.notes || [], subs = pl.subtitles || [];
  document.getElementById('j-subs-box').hidden = !subs.length;
  fill(document.getElementById('j-subs'), subs.map((s, i) => el('tr', {dataset: {subtitle: String(i)}},
    el('td', {}, s.name || `Subtitles ${i + 1}`), el('td', {}, s.language || '–'),
    el('td', {}, s.forced ? 'forced' : (s.hearing_impaired ? 'SDH' : '–')),
    el('td', {}, s.sidecar ? 'subtitle file given with the source' : `source stream ${s.input}`))));
  const loud = (l) => !l ? '–' : (l.integrated <= -70 ? 'silent' : `${l.integrated.toFixed(1)} LUFS, ${l.true_peak.toFixed(1)} dBTP`);
  const made = Object.fromEntries(outs.filter((o) => o.loudness).map((o) => [o.path, o.loudness]));
  document.getElementById('j-audio-box').hidden = !tracks.length && !notes.length && !subs.length;
  const noteBox = document.getElementById('j-notes');
  noteBox.hidden = !notes.length;
  fill(noteBox, notes.map((n) => el('li', {}, n)));
  fill(document.getElementById('j-audio'), tracks.map((a, i) => el('tr', {dataset: {track: String(i)}},
    el('td', {}, a.name || `Track ${i + 1}`), el('td', {}, a.language || '–'), el('td', {class: 'num'}, a.channels || '–'),
    el('td', {}, loud(a.measured)), el('td', {class: 'num'}, a.loudness ? `${a.loudness.gain >= 0 ? '+' : ''}${a.loudness.gain.toFixed(1)} dB` : '–'),
    el('td', {}, loud(made[`media_${(pl.rungs || []).length + i}.m3u8`])),
    el('td', {class: 'muted'}, a.note || (a.loudness && a.loudness.shortfall ? `${a.loudness.shortfall.toFixed(1)} LU under ${a.loudness.target} LUFS: more gain would pass the true-peak limit` : '')))));
}

// svg builds an SVG element as el builds an HTML one: attributes set as
// given (presentation attributes are not style attributes, which the CSP
// forbids), style through the CSSOM, a string child as text.
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') Object.assign(e.style, v);
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

// Per-title search: how a metric is named and its scores written.
const metricName = (m) => ({vmaf: 'VMAF', ssim: 'SSIM'}[m] || String(m || '').toUpperCase());
const score = (m, v) => (v === undefined || v === null || !isFinite(v)) ? '–' : (m === 'vmaf' ? v.toFixed(1) : v.toFixed(4));
// A target as the profile gives it: 93, 0.98, not 93.0 or 0.9800.
const targetNum = (v) => String(+Number(v).toFixed(4));
// Each rung's colour in the chart and its legend (they work light and dark).
const rungColours = ['var(--run)', 'var(--warn)', 'var(--ok)', 'var(--bad)', 'var(--fg)', 'var(--muted)'];
let shownSearch = '';

// samplesText says what of the source the search probed: "1 sample of
// 2.0 s, at 0:03", "3 samples of 2.0 s, at 0:10, 0:40, 1:10".
function samplesText(samples) {
  const lens = samples.map(([a, b]) => b - a);
  if (!lens.length) return 'no samples';
  const n = lens.length + (lens.length === 1 ? ' sample' : ' samples');
  const at = ', at ' + samples.map(([a]) => fmt.dur(a)).join(', ');
  if (lens.every((l) => Math.abs(l - lens[0]) < 0.05)) return `${n} of ${lens[0].toFixed(1)} s${at}`;
  return `${n}, ${lens.reduce((a, b) => a + b, 0).toFixed(1)} s in all${at}`;
}

// showSearch fills the Per-title search section from the plan's quality:
// its target; while the search task has not run, that it is running; once
// it has, what it measured, the bytes saved against the fixed ladder (the
// outputs' own bitrates once the job succeeded), a chart of each rung's
// probes and a table of what was chosen for each rung, kept or dropped.
function showSearch(j, outs) {
  const q = j.plan && j.plan.quality;
  const box = document.getElementById('j-search');
  box.hidden = !q;
  if (!q) return;
  const key = JSON.stringify([j.state, q, outs.map((o) => [o.name, o.kind, o.bitrate, o.ssim, o.vmaf && o.vmaf.mean])]);
  if (key === shownSearch) return; // unchanged: a tooltip being read stays open
  shownSearch = key;
  const t = q.target || {}, s = q.search;
  const ended = ['succeeded', 'failed', 'canceled'].includes(j.state);
  let line = `Target ${metricName(t.metric)} ${targetNum(t.target)}` +
    (t.metric === 'vmaf' && t.fallback ? ` (SSIM ${targetNum(t.fallback)} where VMAF cannot be measured)` : '') + '.';
  const status = document.getElementById('j-search-status');
  status.hidden = !!s || ended;
  status.textContent = !s && !ended ? 'Searching for this title\'s settings…' : '';
  document.getElementById('j-search-chart').hidden = !s;
  document.getElementById('j-search-table').hidden = !s;
  if (!s) {
    document.getElementById('j-search-summary').textContent = line;
    fill(document.getElementById('j-search-chart'), []);
    fill(document.getElementById('j-search-rungs'), []);
    return;
  }
  const m = s.metric, rungs = s.rungs || [];
  line += ` The search measured ${metricName(m)}` + (m !== t.metric ? ` (its worker could not measure ${metricName(t.metric)})` : '') +
    ` on ${samplesText(s.samples || [])}.`;
  // What each kept rung spends: its output's bitrate once the job made it, else the chosen probe's.
  // A ladder's renditions by rung name; an mp4 or mkv's one file is its one rung.
  const one = (j.plan.format === 'mp4' || j.plan.format === 'mkv') && rungs.length ? rungs[0].name : '';
  const made = Object.fromEntries(outs.filter((o) => o.kind === 'hls' || (one && o.kind === j.plan.format)).map((o) => [one || o.name, o]));
  const kept = rungs.filter((r) => !r.dropped);
  const madeAll = j.state === 'succeeded' && kept.every((r) => made[r.name]?.bitrate);
  const spent = kept.reduce((a, r) => a + ((madeAll ? made[r.name].bitrate : r.bitrate) || 0), 0);
  const fixed = rungs.reduce((a, r) => a + (r.fixed || 0), 0);
  if (rungs.length && rungs.every((r) => r.fixed > 0) && spent > 0) {
    const saved = 1 - spent / fixed;
    line += ` Against the fixed ladder: ${fmt.pct(Math.abs(saved))} ${saved >= 0 ? 'fewer' : 'more'} bytes ` +
      `(${fmt.bitrate(spent)} ${madeAll ? 'made' : 'predicted'} for ${kept.length} of ${rungs.length} ${rungs.length === 1 ? 'rung' : 'rungs'}, against ${fmt.bitrate(fixed)}).`;
  }
  const summary = document.getElementById('j-search-summary');
  summary.textContent = line;
  summary.dataset.saved = fixed && spent ? String(1 - spent / fixed) : '';
  fill(document.getElementById('j-search-chart'), searchChart(s, rungs));
  const measured = (o) => {
    if (!o) return '–';
    const own = m === 'vmaf' ? o.vmaf?.mean : o.ssim;
    if (own) return score(m, own);
    if (m !== 'vmaf' && o.vmaf) return 'VMAF ' + score('vmaf', o.vmaf.mean);
    if (m === 'vmaf' && o.ssim) return 'SSIM ' + score('ssim', o.ssim);
    return '–';
  };
  fill(document.getElementById('j-search-rungs'), rungs.map((r) => el('tr', {dataset: {rung: r.name, kept: r.dropped ? 'false' : 'true'}},
    el('td', {}, r.name), el('td', {class: 'num'}, r.target ? `${metricName(m)} ${targetNum(r.target)}` : '–',
      r.bound ? el('div', {class: 'muted'}, `its size allows ${score(m, r.bound)} (its own target ${targetNum(r.wanted)})`) : null),
    el('td', {class: 'num'}, r.crf || '–'),
    el('td', {class: 'num'}, score(m, r.score), r.crf && !r.reached ? el('div', {class: 'muted'}, 'short of the target') : null),
    el('td', {class: 'num'}, fmt.bitrate(r.bitrate)),
    el('td', {class: 'num'}, r.dropped ? '–' : measured(made[r.name])),
    el('td', {class: 'num'}, fmt.bitrate(r.fixed)),
    el('td', {class: r.dropped ? 'muted' : ''}, r.dropped ? 'dropped: ' + r.dropped : r.reencoded ? 'kept; ' + r.reencoded : r.capped ? (r.fixed ? 'kept: capped, encoded at the fixed ladder\'s bitrate' : 'kept: capped (its bitrate cap binds)') : 'kept'))));
}

// searchChart draws the search's probes: quality (the search's metric)
// against bitrate on a log scale, one colour a rung, its probes joined in
// CRF order, the chosen one larger and filled, its target a short dashed
// line; a legend names the rungs. No library: SVG built element by element.
function searchChart(s, rungs) {
  const m = s.metric;
  const series = rungs.map((r, i) => ({r, colour: rungColours[i % rungColours.length],
    probes: (r.probes || []).filter((p) => p.bitrate > 0 && isFinite(p.score)).sort((a, b) => a.crf - b.crf)})).filter((x) => x.probes.length);
  if (!series.length) return [el('p', {class: 'muted'}, 'The search reported no probes.')];
  const all = series.flatMap((x) => x.probes);
  const W = 640, H = 280, L = 64, R = 16, T = 14, B = 44;
  let x0 = Math.log10(Math.min(...all.map((p) => p.bitrate))), x1 = Math.log10(Math.max(...all.map((p) => p.bitrate)));
  if (x1 - x0 < 0.1) { x0 -= 0.05; x1 += 0.05; }
  const xpad = (x1 - x0) * 0.06; x0 -= xpad; x1 += xpad;
  const ys = all.map((p) => p.score).concat(series.filter((x) => x.r.target).map((x) => x.r.target));
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < (m === 'vmaf' ? 1 : 0.002)) { const c = (y0 + y1) / 2, h = m === 'vmaf' ? 0.5 : 0.001; y0 = c - h; y1 = c + h; }
  const ypad = (y1 - y0) * 0.08; y0 -= ypad; y1 += ypad;
  const X = (b) => L + ((Math.log10(b) - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const text = {fill: 'var(--muted)'};
  const grid = {stroke: 'var(--line)'};
  const kids = [];
  // The y axis: about five round steps of the metric.
  const raw = (y1 - y0) / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((v) => v >= raw);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  for (let v = Math.ceil(y0 / step) * step; v <= y1 + 1e-12; v += step) {
    kids.push(svg('line', {x1: L, x2: W - R, y1: Y(v), y2: Y(v), style: grid}),
      svg('text', {x: L - 6, y: Y(v) + 4, 'text-anchor': 'end', 'font-size': 11, style: text}, v.toFixed(decimals)));
  }
  // The x axis: 1-2-5 steps of bitrate over a decade or more; over less,
  // about four round steps (still placed on the log scale).
  const ticks = [];
  if (x1 - x0 >= 1) {
    for (let e = Math.floor(x0); e <= Math.ceil(x1); e++) {
      for (const k of [1, 2, 5]) { const b = k * 10 ** e; if (Math.log10(b) >= x0 && Math.log10(b) <= x1) ticks.push(b); }
    }
  } else {
    const b0 = 10 ** x0, b1 = 10 ** x1, rawB = (b1 - b0) / 4, magB = 10 ** Math.floor(Math.log10(rawB));
    const stepB = [1, 2, 5, 10].map((k) => k * magB).find((v) => v >= rawB);
    for (let b = Math.ceil(b0 / stepB) * stepB; b <= b1; b += stepB) ticks.push(b);
  }
  for (const b of ticks) {
    kids.push(svg('line', {x1: X(b), x2: X(b), y1: T, y2: H - B, style: grid}),
      svg('text', {x: X(b), y: H - B + 16, 'text-anchor': 'middle', 'font-size': 11, style: text}, fmt.bitrate(b)));
  }
  kids.push(svg('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, style: {stroke: 'var(--muted)'}}),
    svg('line', {x1: L, x2: L, y1: T, y2: H - B, style: {stroke: 'var(--muted)'}}),
    svg('text', {x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12, style: text}, 'bitrate (log scale)'),
    svg('text', {x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', 'font-size': 12, transform: `rotate(-90 14 ${(T + H - B) / 2})`, style: text}, metricName(m)));
  for (const {r, colour, probes} of series) {
    const g = svg('g', {'data-rung': r.name, opacity: r.dropped ? 0.55 : 1});
    const xs = probes.map((p) => X(p.bitrate));
    if (r.target) {
      g.append(svg('line', {x1: Math.min(...xs) - 14, x2: Math.max(...xs) + 14, y1: Y(r.target), y2: Y(r.target),
        'stroke-width': 1.5, 'stroke-dasharray': '5 4', style: {stroke: colour}}));
    }
    g.append(svg('polyline', {points: probes.map((p) => `${X(p.bitrate).toFixed(1)},${Y(p.score).toFixed(1)}`).join(' '), fill: 'none',
      'stroke-width': 1.5, 'stroke-dasharray': r.dropped ? '2 3' : null, style: {stroke: colour}}));
    for (const p of probes) {
      const chosen = r.crf && p.crf === r.crf;
      g.append(svg('circle', {cx: X(p.bitrate), cy: Y(p.score), r: chosen ? 6 : 3.5, 'stroke-width': 1.5, class: chosen ? 'chosen' : 'probe',
        style: {stroke: colour, fill: chosen ? colour : 'var(--card)'}},
      svg('title', {}, `${r.name} at CRF ${p.crf}: ${fmt.bitrate(p.bitrate)}, ${metricName(m)} ${score(m, p.score)}${chosen ? ' (chosen)' : ''}`)));
    }
    kids.push(g);
  }
  const desc = `Quality (${metricName(m)}) against bitrate of the search's probes, one line a rung: ` + series.map(({r}) =>
    `${r.name}${r.crf ? ` chose CRF ${r.crf}, ${fmt.bitrate(r.bitrate)}, ${metricName(m)} ${score(m, r.score)}` : ''}` +
    (r.target ? ` for a target of ${targetNum(r.target)}` : '') + (r.dropped ? ' (dropped)' : '')).join('; ') + '.';
  const chart = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': desc, style: {width: '100%', maxWidth: W + 'px', height: 'auto', display: 'block'}},
    svg('title', {}, desc), ...kids);
  const swatch = (colour, filled) => el('span', {'aria-hidden': 'true', style: {display: 'inline-block', width: '10px', height: '10px', borderRadius: '50%',
    border: `2px solid ${colour}`, background: filled ? colour : 'transparent', marginRight: '6px', verticalAlign: 'middle'}});
  const legend = el('ul', {class: 'legend', style: {listStyle: 'none', padding: '0', margin: '6px 0 12px', display: 'flex', flexWrap: 'wrap', gap: '4px 18px'}},
    series.map(({r, colour}) => el('li', {dataset: {rung: r.name}}, swatch(colour, true), r.name, r.dropped ? ' (dropped)' : '')),
    el('li', {class: 'muted'}, swatch('var(--muted)', false), 'a probe; filled and larger: the setting chosen; dashed: the rung\'s target'));
  return [chart, legend];
}

function showChunks(tasks) {
  const chunks = tasks.filter((t) => t.kind === 'chunk').sort((a, b) => a.chunk - b.chunk);
  document.getElementById('j-chunks-box').hidden = !chunks.length;
  const strip = document.getElementById('j-chunks');
  if (strip.children.length !== chunks.length) fill(strip, chunks.map(() => el('li', {}, el('progress', {max: 1, value: 0}))));
  chunks.forEach((t, i) => {
    const li = strip.children[i];
    const label = chunkLabel(t);
    li.className = 'chunk ' + t.state;
    li.title = label;
    Object.assign(li.dataset, {chunk: t.chunk, state: t.state, attempt: t.attempt});
    const bar = li.querySelector('progress');
    bar.value = t.state === 'succeeded' ? 1 : t.progress;
    bar.setAttribute('aria-label', label);
    let badge = li.querySelector('.retry');
    if (t.attempt > 1) {
      if (!badge) li.append(badge = el('span', {class: 'retry', 'aria-hidden': 'true'}));
      badge.textContent = t.attempt;
    } else badge?.remove();
  });
  let done = 0, running = 0, failed = 0, retried = 0;
  for (const t of chunks) {
    if (t.state === 'succeeded') done++;
    else if (t.state === 'running') running++;
    else if (t.state === 'failed') failed++;
    if (t.attempt > 1) retried++;
  }
  document.getElementById('j-chunks-summary').textContent = chunks.length ? `${chunks.length} chunks: ${done} done, ${running} running` +
    (failed ? `, ${failed} failed` : '') + (retried ? `, ${retried} retried` : '') : '';
}

// Codecs as ffprobe names them: a user's name for each, and an RFC 6381
// string (a common profile) to ask the browser whether it decodes it.
const codecNames = {h264: 'H.264', hevc: 'HEVC', av1: 'AV1', vp9: 'VP9'};
// levelCodec names an hls.js level's video codec from its CODECS (av01... is AV1).
const levelCodec = (l) => codecNames[{av01: 'av1', avc1: 'h264', avc3: 'h264', hvc1: 'hevc', hev1: 'hevc'}[(l.videoCodec || '').slice(0, 4)]] || '';
const codecIDs = {h264: 'avc1.640028', hevc: 'hvc1.1.6.L120.90', av1: 'av01.0.08M.08', vp9: 'vp09.00.40.08'};

// canPlayFile says whether this browser decodes a file output. Matroska is
// played only as WebM is: H.264, VP9 or AV1, and only where the browser
// says so; HEVC in it never (unplayable in jobpage.go says the same).
function canPlayFile(video, o) {
  const id = codecIDs[o.codec];
  if (o.kind === 'mp4') return video.canPlayType(id ? `video/mp4; codecs="${id}"` : 'video/mp4') !== '';
  if (o.kind !== 'mkv' || !id || o.codec === 'hevc') return false;
  return ['video/webm', 'video/x-matroska'].some((t) => video.canPlayType(`${t}; codecs="${id}"`) !== '');
}

// showNoPlay puts a notice with the download where the player would show
// only black: the words job.html writes when the server can tell (then it
// is left as it is, so that a screen reader does not read it out again).
function showNoPlay(o) {
  const name = o.path.split('/').pop();
  const why = (codecNames[o.codec] || (o.codec ? o.codec.toUpperCase() : 'an unknown codec')) + ' in ' + (o.kind === 'mkv' ? 'Matroska' : o.kind.toUpperCase());
  const box = document.getElementById('j-noplay');
  if (box.hidden) fill(box, ['This browser cannot play ', el('span', {class: 'file'}, name), ` (${why}). `,
    el('a', {href: o.url, download: name}, 'Download ' + name), ', or play it in VLC, mpv, Plex or Jellyfin.']);
  box.hidden = false;
  document.getElementById('player').hidden = true;
  document.getElementById('player-box').hidden = false;
}

// setupPlayer plays the job's HLS ladder with hls.js (quality menu: auto
// and each rung), or its MP4 natively, with sprite previews on the seek bar.
// Outputs this browser cannot decode get a notice with their download.
// With liveURL, it plays the live playlist of a job still encoding, from
// its start; finish(outs) moves it to the verified outputs once the job
// succeeded (at once when nothing plays, else at the next pause).
function setupPlayer(outs, liveURL) {
  const video = document.getElementById('video');
  const master = liveURL ? {kind: 'hls', name: 'master', url: liveURL} : outs.find((o) => o.kind === 'hls' && o.name === 'master');
  const ladder = master && (window.Hls?.isSupported() || video.canPlayType('application/vnd.apple.mpegurl') !== '');
  const files = outs.filter((o) => o.kind === 'mp4' || o.kind === 'mkv');
  const file = files.find((o) => canPlayFile(video, o));
  if (!ladder && !file) {
    if (!files.length) return null;
    showNoPlay(files[0]);
    return {video: null, hls: null}; // the notice is up: not again on each update
  }
  document.getElementById('j-noplay').hidden = true;
  document.getElementById('player').hidden = false;
  document.getElementById('player-box').hidden = false;
  const box = document.getElementById('player');
  const seek = document.getElementById('p-seek');
  const quality = document.getElementById('p-quality');
  const play = document.getElementById('p-play');
  const showPoster = (outs) => {
    const poster = outs.find((o) => o.kind === 'poster');
    if (poster) video.poster = poster.url;
  };
  showPoster(outs);
  const p = {video, hls: null, live: !!liveURL};
  window.herdPlayer = p;
  if (liveURL) box.dataset.live = 'true';
  document.getElementById('p-live').hidden = !liveURL;
  video.addEventListener('error', () => { box.dataset.error = video.error?.message || 'media error'; });
  if (master && window.Hls?.isSupported()) {
    const hls = new Hls({enableWorker: false, capLevelToPlayerSize: false, ...(liveURL ? {startPosition: 0} : {})});
    p.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
      const opts = [el('option', {value: 'auto'}, 'Auto')];
      // A ladder of two codecs (web-cmaf-av1) has two 360p rungs: say which is which.
      const mixed = new Set(d.levels.map(levelCodec)).size > 1;
      d.levels.map((l, i) => ({l, i})).sort((a, b) => b.l.height - a.l.height)
        .forEach(({l, i}) => opts.push(el('option', {value: i}, `${l.height}p${mixed ? ' ' + levelCodec(l) : ''} · ${fmt.bitrate(l.bitrate)}`)));
      fill(quality, opts);
      quality.hidden = false;
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
      box.dataset.level = d.level;
      const l = hls.levels[d.level];
      if (quality.value === 'auto' && l) quality.options[0].textContent = `Auto (${l.height}p)`;
    });
    hls.on(Hls.Events.FRAG_CHANGED, (_, d) => { box.dataset.playingLevel = d.frag.level; });
    let recovered = 0;
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      if (recovered++ < 3 && d.type === Hls.ErrorTypes.NETWORK_ERROR) { hls.startLoad(); return; }
      if (recovered < 3 && d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      box.dataset.error = d.details;
      flash('The video cannot be played: ' + d.details);
    });
    hls.loadSource(master.url);
    hls.attachMedia(video);
    quality.addEventListener('change', () => {
      hls.currentLevel = quality.value === 'auto' ? -1 : Number(quality.value);
      if (quality.value === 'auto') quality.options[0].textContent = 'Auto';
    });
  } else if (master && video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = master.url; // Safari plays HLS itself
  } else {
    video.src = file.url;
  }
  play.addEventListener('click', () => (video.paused ? video.play() : video.pause()));
  video.addEventListener('play', () => { play.textContent = 'Pause'; });
  video.addEventListener('pause', () => { play.textContent = 'Play'; });
  const mute = document.getElementById('p-mute');
  const showMute = () => { mute.textContent = video.muted ? 'Unmute' : 'Mute'; };
  video.addEventListener('volumechange', showMute);
  mute.addEventListener('click', () => { video.muted = !video.muted; });
  document.getElementById('p-full').addEventListener('click', () => (document.fullscreenElement ? document.exitFullscreen() : box.requestFullscreen?.()));
  const time = document.getElementById('p-time');
  const showTime = () => {
    if (isFinite(video.duration)) seek.max = video.duration;
    if (!seek.matches(':active')) seek.value = video.currentTime;
    time.textContent = `${fmt.dur(video.currentTime)} / ${fmt.dur(video.duration)}`;
  };
  video.addEventListener('timeupdate', showTime);
  video.addEventListener('durationchange', showTime);
  seek.addEventListener('input', () => { video.currentTime = Number(seek.value); preview(Number(seek.value)); });
  seek.addEventListener('change', () => { document.getElementById('p-preview').hidden = true; });

  // Seek-bar previews from the WebVTT sprite track.
  let cues = [], base = '';
  const showThumbs = (outs) => {
    const vtt = outs.find((o) => o.kind === 'thumbnails_vtt');
    if (!vtt) return;
    base = vtt.url.slice(0, vtt.url.lastIndexOf('/') + 1);
    fetch(vtt.url, {credentials: 'same-origin'}).then((r) => r.text()).then((t) => { cues = parseThumbVTT(t); box.dataset.thumbnails = cues.length; });
  };
  showThumbs(outs);
  p.finish = (outs) => {
    p.live = false;
    showPoster(outs);
    showThumbs(outs);
    const final = outs.find((o) => o.kind === 'hls' && o.name === 'master');
    if (!final) return;
    const move = () => {
      const at = video.currentTime;
      if (p.hls) {
        p.hls.config.startPosition = at;
        p.hls.loadSource(final.url);
      } else { // Safari's own HLS
        video.src = final.url;
        video.addEventListener('loadedmetadata', () => { video.currentTime = at; }, {once: true});
      }
      delete box.dataset.live;
      document.getElementById('p-live').hidden = true;
    };
    if (video.paused || video.ended) move();
    else video.addEventListener('pause', move, {once: true});
  };
  const pv = document.getElementById('p-preview');
  const thumb = document.getElementById('p-thumb');
  function preview(t) {
    const c = cues.find((c) => t >= c.start && t < c.end) || cues[cues.length - 1];
    if (!c) return;
    thumb.style.width = c.w + 'px';
    thumb.style.height = c.h + 'px';
    thumb.style.backgroundImage = `url("${base + c.file}")`;
    thumb.style.backgroundPosition = `-${c.x}px -${c.y}px`;
    document.getElementById('p-preview-time').textContent = fmt.dur(t);
    pv.hidden = false;
    const frac = seek.max > 0 ? t / seek.max : 0;
    pv.style.left = `${Math.min(Math.max(frac * 100, 8), 92)}%`;
    box.dataset.preview = c.file + '#' + [c.x, c.y, c.w, c.h].join(',');
  }
  seek.addEventListener('pointermove', (e) => {
    const r = seek.getBoundingClientRect();
    if (isFinite(video.duration)) preview(((e.clientX - r.left) / r.width) * video.duration);
  });
  seek.addEventListener('pointerleave', () => { pv.hidden = true; });
  seek.addEventListener('blur', () => { pv.hidden = true; });
  return p;
}

// parseThumbVTT reads cues of the form "00:00:02.000 --> 00:00:04.000" then "sprite.jpg#xywh=x,y,w,h".
function parseThumbVTT(text) {
  const ts = (s) => s.trim().split(':').reduce((a, v) => a * 60 + parseFloat(v), 0);
  const out = [];
  for (const block of text.replace(/\r/g, '').split('\n\n')) {
    const lines = block.split('\n').filter(Boolean);
    const i = lines.findIndex((l) => l.includes('-->'));
    if (i < 0 || !lines[i + 1]) continue;
    const [a, b] = lines[i].split('-->');
    const m = lines[i + 1].match(/^([^#]+)#xywh=(\d+),(\d+),(\d+),(\d+)$/);
    if (!m) continue;
    out.push({start: ts(a), end: ts(b.split(' ').filter(Boolean)[0]), file: m[1], x: +m[2], y: +m[3], w: +m[4], h: +m[5]});
  }
  return out;
}

pages.workers = () => {
  const rows = document.getElementById('w-rows');
  const act = (name, what) => async (e) => {
    if (what === 'revoke' && !confirm(`Revoke ${name}? Its key stops working at once and its tasks go back to the queue.`)) return;
    e.target.disabled = true;
    try { await api('POST', `/api/v1/workers/${encodeURIComponent(name)}/${what}`); } catch (err) { flash(`Could not ${what} ${name}: ${err.message}`); e.target.disabled = false; }
  };
  const taskLine = (t) => el('li', {}, el('a', {href: '/jobs/' + t.job_id}, t.job_name || t.job_id), ` ${t.kind} `,
    el('progress', {max: 1, value: t.progress, 'aria-label': t.kind + ' progress'}), ` ${fmt.pct(t.progress)}`, t.speed ? ` at ${fmt.speed(t.speed)}` : '', t.worker ? el('span', {class: 'muted'}, ' on ' + t.worker) : '');
  live({view: 'workers'}, (d) => {
    fill(rows, d.workers.length ? d.workers.map((w) => el('tr', {dataset: {worker: w.name, state: w.state}},
      el('td', {class: 'name'}, w.name), el('td', {}, stateBadge(w.state)), el('td', {}, w.capabilities.join(', ') || '–'),
      el('td', {class: 'num'}, w.slots), el('td', {}, w.running.length ? el('ul', {}, w.running.map(taskLine)) : el('span', {class: 'muted'}, 'idle')),
      el('td', {}, fmt.ago(w.last_seen)), el('td', {}, w.version || '–', w.outdated ? el('div', {class: 'error'}, w.outdated) : null),
      el('td', {}, w.state === 'active' ? el('button', {type: 'button', onclick: act(w.name, 'drain'), 'aria-label': 'Drain ' + w.name}, 'Drain') : null,
        w.state === 'draining' ? el('button', {type: 'button', onclick: act(w.name, 'resume'), 'aria-label': 'Resume ' + w.name}, 'Resume') : null,
        w.state !== 'revoked' ? el('button', {type: 'button', class: 'danger', onclick: act(w.name, 'revoke'), 'aria-label': 'Revoke ' + w.name}, 'Revoke') : null))) :
      [el('tr', {}, el('td', {colspan: 8, class: 'muted'}, 'No remote workers have registered.'))]);
    fill(document.getElementById('w-other'), d.other_running.length ? d.other_running.map(taskLine) : [el('li', {class: 'muted'}, 'Nothing running.')]);
    const unmet = d.unmet_needs || [];
    document.getElementById('w-unmet-box').hidden = !unmet.length;
    fill(document.getElementById('w-unmet'), unmet.map((u) => el('li', {dataset: {capability: u.capability}},
      `${u.capability}: no worker has it; ${u.hint}. Waiting: `,
      ...u.jobs.flatMap((id, i) => [i ? ', ' : '', el('a', {href: '/jobs/' + id}, id)]))));
  });
};

// The libraries page: each library with its files by state, a scan
// button, and the files of the library chosen (all but the ones its rule
// skips), refreshed every few seconds.
pages.libraries = () => {
  const rows = document.getElementById('l-rows');
  const order = ['queued', 'matched', 'planned', 'replaced', 'done', 'kept', 'failed', 'unprobeable', 'rule_error', 'skipped', 'herd'];
  let chosen = '';
  const counts = (c) => order.filter((s) => c[s]).map((s) => `${c[s]} ${s.replace('_', ' ')}`).join(', ') || 'no files yet';
  const showFiles = async () => {
    if (!chosen) return;
    const r = await api('GET', `/api/v1/libraries/${encodeURIComponent(chosen)}`);
    document.getElementById('l-files-box').hidden = false;
    document.getElementById('l-name').textContent = chosen;
    const checks = r.checks || {};
    document.getElementById('l-summary').textContent = counts(r.counts) +
      (r.bytes ? `; ${fmt.bytes(r.bytes)} to encode, estimated to become ${fmt.bytes(r.estimate)}` : '') +
      (r.saved ? `; ${fmt.bytes(r.saved)} saved so far` : '') +
      (Object.keys(checks).length ? `. Health check: ${(checks.ok || 0) + (checks.damaged || 0)} checked, ${checks.damaged || 0} damaged, ${checks.pending || 0} to check` : '') +
      (r.waiting ? ` (${r.waiting})` : '');
    // A file's health: what its last check found, linked to the check's job.
    const health = (f) => !f.check ? '–' : [f.check_job ? el('a', {href: '/jobs/' + f.check_job}, f.check) : f.check,
      f.check_note ? el('div', {class: 'muted'}, f.check_note) : null];
    const files = (r.files || []).filter((f) => f.state !== 'skipped' || f.check).sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state));
    fill(document.getElementById('l-files'), files.length ? files.map((f) => el('tr', {dataset: {file: f.path, state: f.state}},
      el('td', {}, stateBadge(f.state)), el('td', {}, f.path), el('td', {class: 'num'}, fmt.bytes(f.size)),
      el('td', {}, (f.facts && f.facts.video && f.facts.video.codec) || '–'),
      el('td', {}, f.job_id ? el('a', {href: '/jobs/' + f.job_id}, f.job_id) : '–'), el('td', {class: 'muted'}, f.note || ''),
      el('td', {dataset: {check: f.check || ''}}, ...[].concat(health(f))))) :
      [el('tr', {}, el('td', {colspan: 7, class: 'muted'}, 'Nothing but files the rule skips.'))]);
  };
  const load = async () => {
    let ls;
    try { ls = (await api('GET', '/api/v1/libraries')).libraries || []; } catch (err) { flash('Could not list the libraries: ' + err.message); return; }
    fill(rows, ls.length ? ls.map((l) => {
      const n = Object.values(l.counts || {}).reduce((a, b) => a + b, 0);
      return el('tr', {dataset: {library: l.name}},
        el('td', {}, el('button', {type: 'button', class: 'link', onclick: () => { chosen = l.name; showFiles(); }, 'aria-label': 'Show the files of ' + l.name}, l.name)),
        el('td', {}, l.path), el('td', {}, el('code', {}, l.rule)), el('td', {}, l.profile),
        el('td', {}, l.action === 'publish' ? `publish to ${(l.publish || []).join(', ')}` : l.action),
        el('td', {}, `${n}: ${counts(l.counts || {})}`), el('td', {class: 'num'}, fmt.bytes(l.saved || 0)),
        el('td', {}, el('button', {type: 'button', 'aria-label': 'Scan now ' + l.name, onclick: async (e) => {
          e.target.disabled = true;
          try { await api('POST', `/api/v1/libraries/${encodeURIComponent(l.name)}/scan`); chosen = l.name; await load(); } catch (err) { flash(`Could not scan ${l.name}: ${err.message}`); }
          e.target.disabled = false;
        }}, 'Scan now')));
    }) : [el('tr', {}, el('td', {colspan: 8, class: 'muted'}, 'No libraries: declare them under libraries: in the server\'s configuration file.'))]);
    if (!chosen && ls.length) chosen = ls[0].name;
    await showFiles();
  };
  load();
  setInterval(load, 5000);
};

pages.campaigns = () => {
  const rows = document.getElementById('c-rows');
  const act = (c, what) => async (e) => {
    if (what === 'cancel' && !confirm(`Cancel campaign ${c.id}? Its jobs that have not finished are canceled; what it replaced stays replaced.`)) return;
    e.target.disabled = true;
    try { await api('POST', `/api/v1/campaigns/${encodeURIComponent(c.id)}/${what}`); } catch (err) { flash(`Could not ${what} ${c.id}: ${err.message}`); e.target.disabled = false; }
  };
  live({view: 'campaigns'}, (d) => {
    const cs = d.campaigns || [];
    fill(rows, cs.length ? cs.map((c) => {
      const n = c.counts;
      const done = n.total ? (n.succeeded + n.failed + n.skipped) / n.total : 1;
      return el('tr', {dataset: {campaign: c.id, state: c.state}},
        el('td', {class: 'name'}, c.id), el('td', {}, c.profile), el('td', {}, `${c.from_version}–${c.to_version - 1} → ${c.to_version}`),
        el('td', {}, stateBadge(c.state)),
        el('td', {}, el('progress', {max: 1, value: done, 'aria-label': `campaign ${c.id} progress`}),
          ` ${n.succeeded} of ${n.total} replaced`, n.running ? `, ${n.running} running` : '', n.pending ? `, ${n.pending} waiting` : '',
          n.failed ? el('span', {class: 'error'}, `, ${n.failed} failed`) : '', n.skipped ? `, ${n.skipped} skipped` : ''),
        el('td', {}, [c.filter.library && `library ${c.filter.library}`, c.filter.query && `name has “${c.filter.query}”`,
          c.filter.labels && Object.entries(c.filter.labels).map(([k, v]) => `${k}=${v}`).join(', '), c.window && `only ${c.window}`,
          `${c.max_running} at a time`].filter(Boolean).join('; ')),
        el('td', {}, fmt.time(c.created_at)),
        el('td', {}, c.state === 'running' ? el('button', {type: 'button', onclick: act(c, 'pause'), 'aria-label': 'Pause ' + c.id}, 'Pause') : null,
          c.state === 'paused' ? el('button', {type: 'button', onclick: act(c, 'resume'), 'aria-label': 'Resume ' + c.id}, 'Resume') : null,
          c.state === 'running' || c.state === 'paused' ? el('button', {type: 'button', class: 'danger', onclick: act(c, 'cancel'), 'aria-label': 'Cancel ' + c.id}, 'Cancel') : null));
    }) : [el('tr', {}, el('td', {colspan: 8, class: 'muted'}, 'No campaigns yet.'))]);
  });
};

pages.upload = () => {
  const list = document.getElementById('uploads');
  const drop = document.getElementById('drop');
  const input = document.getElementById('files');
  const profile = document.getElementById('profile');
  const paused = new Set();
  const active = new Set(); // tus.Upload objects of this page
  const storage = tus.defaultOptions.urlStorage;

  // Uploads a reload left unfinished: choose the same file to resume one.
  const showPending = async () => {
    const mine = new Set([...active].map((a) => a.url).filter(Boolean));
    const all = (await storage.findAllUploads()).filter((u) => u.metadata?.filename && !mine.has(u.uploadUrl));
    document.getElementById('pending-box').hidden = !all.length;
    fill(document.getElementById('pending'), all.map((u) => el('li', {dataset: {pending: u.metadata.filename}},
      `${u.metadata.filename} (${fmt.bytes(u.size)}, ${u.metadata.profile}) `,
      el('button', {type: 'button', onclick: async () => {
        try { await tus.Upload.terminate(u.uploadUrl, {headers: {'X-CSRF-Token': csrf}}); } catch (_) { /* already gone */ }
        await storage.removeUpload(u.urlStorageKey);
        showPending();
      }}, 'Forget'))));
  };
  showPending();

  // sendSubtitle stores the chosen subtitle file and answers the upload
  // metadata that gives it with a video; the server refuses one that does
  // not parse, naming the line.
  const sendSubtitle = async () => {
    const f = document.getElementById('subtitle-file').files[0];
    if (!f) return '';
    const res = await fetch('/api/v1/subtitles', {method: 'POST', body: f, headers: {'X-CSRF-Token': csrf, 'Content-Type': 'application/octet-stream'}});
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`${f.name}: ${body.error?.message || res.statusText}`);
    const lang = document.getElementById('subtitle-lang').value.trim() || 'und';
    const kind = document.getElementById('subtitle-kind').value;
    return `${lang}${kind ? ':' + kind : ''}=${body.id}`;
  };

  const start = async (file) => {
    const prof = profile.value;
    const publish = [...document.querySelectorAll('input[name="publish"]:checked')].map((c) => c.value).join(',');
    const labels = document.getElementById('labels').value.trim();
    const bar = el('progress', {max: 1, value: 0, 'aria-label': 'upload of ' + file.name});
    const status = el('span', {class: 'status', 'aria-live': 'polite'}, 'starting…');
    const actions = el('span', {});
    const li = el('li', {dataset: {upload: file.name, state: 'uploading'}}, el('span', {class: 'name'}, file.name), actions, bar, status);
    list.prepend(li);
    const setState = (s, msg) => { li.dataset.state = s; status.textContent = msg; };
    let subtitles = '';
    try {
      subtitles = await sendSubtitle();
    } catch (err) {
      setState('failed', 'Refused: ' + err.message);
      return;
    }
    const meta = {filename: file.name, profile: prof, publish, labels};
    if (subtitles) meta.subtitles = subtitles;
    const up = new tus.Upload(file, {
      endpoint: '/api/v1/uploads',
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      metadata: meta,
      headers: {'X-CSRF-Token': csrf},
      removeFingerprintOnSuccess: true,
      fingerprint: (f) => Promise.resolve(['herd', f.name, f.type, f.size, f.lastModified, prof, publish, labels, subtitles].join('/')),
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'HEAD' && res.getStatus() === 200) li.dataset.resumedFrom = res.getHeader('Upload-Offset');
      },
      onProgress: (sent, total) => {
        bar.value = total ? sent / total : 0;
        setState('uploading', `${fmt.bytes(sent)} of ${fmt.bytes(total)} (${fmt.pct(bar.value)})`);
      },
      onError: (err) => {
        const res = err.originalResponse;
        const status = res ? res.getStatus() : 0;
        if (status >= 400 && status < 500 && status !== 409 && status !== 423) {
          setState('failed', 'Refused: ' + (res.getBody() || err.message).trim());
          fill(actions, []);
          return;
        }
        paused.add(resume);
        setState('paused', navigator.onLine ? 'Paused: the server could not be reached. ' : 'Paused: this computer is offline; it goes on when the network is back. ');
        fill(actions, [el('button', {type: 'button', onclick: resume}, 'Resume')]);
      },
      onSuccess: (payload) => {
        bar.value = 1;
        const id = payload?.lastResponse?.getHeader('Herd-Job-Id');
        li.dataset.state = 'done';
        if (id) li.dataset.jobId = id;
        fill(status, id ? ['Uploaded. ', el('a', {href: '/jobs/' + id}, 'Follow the job')] : ['Uploaded; the job is in ', el('a', {href: '/jobs'}, 'Jobs'), '.']);
        fill(actions, []);
        active.delete(up);
        showPending();
      },
    });
    active.add(up);
    function resume() {
      paused.delete(resume);
      fill(actions, [el('button', {type: 'button', onclick: () => { up.abort(); paused.add(resume); setState('paused', 'Paused. '); fill(actions, [el('button', {type: 'button', onclick: resume}, 'Resume')]); }}, 'Pause')]);
      up.start();
    }
    up.findPreviousUploads().then((prev) => {
      if (prev.length) up.resumeFromPreviousUpload(prev[0]);
      resume();
    });
  };
  window.addEventListener('online', () => [...paused].forEach((r) => r()));
  input.addEventListener('change', () => { [...input.files].forEach(start); input.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); [...e.dataTransfer.files].forEach(start); });
};

document.querySelectorAll('[data-nav]').forEach((a) => {
  if (a.dataset.nav === document.body.dataset.page || (a.dataset.nav === 'jobs' && document.body.dataset.page === 'job')) a.setAttribute('aria-current', 'page');
});
pages[document.body.dataset.page]?.();
