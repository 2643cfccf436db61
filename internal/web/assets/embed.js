// The playback link's player: the job's HLS ladder through hls.js (or the
// browser's own HLS, as in Safari), else its MP4; menus for quality, audio
// and subtitles appear where the stream has a choice. A job still
// encoding plays its live playlist from the start, once that answers.
// Every URL is relative to the page, which is below the link's token.
'use strict';
(async () => {
  const video = document.getElementById('video');
  const menus = document.getElementById('menus');
  const errBox = document.getElementById('error');
  const live = !!video.dataset.live;
  const src = video.dataset.hls || video.dataset.live, file = video.dataset.file;
  window.herdEmbed = {video, hls: null, live};
  const note = document.getElementById('live-note');
  const fail = (msg) => {
    errBox.textContent = 'This video cannot be played: ' + msg;
    errBox.hidden = false;
    if (note) note.hidden = true;
  };
  video.addEventListener('error', () => fail(video.error?.message || 'a media error'));

  // The live master playlist answers 404 not_ready until the encode has
  // finished a segment of every rendition: ask again every two seconds,
  // and while the server is away or busy. Any other answer (the job ended
  // before that, the link expired) is final.
  while (live) {
    try {
      const r = await fetch(src, {cache: 'no-store'});
      if (r.ok) break;
      const body = await r.json().catch(() => ({}));
      if (r.status < 500 && r.status !== 429 && body.error?.code !== 'not_ready') {
        fail((body.error?.message || `the live playlist answered ${r.status}`) + '. Reload this page to see what became of the video.');
        return;
      }
    } catch (e) { /* the server is away: ask again */ }
    await new Promise((ok) => setTimeout(ok, 2000));
  }

  // menu fills a select with choices and shows it (with its label) when
  // there is more than one.
  const menu = (id, choices, current, onPick) => {
    const sel = document.getElementById(id);
    sel.replaceChildren(...choices.map(([value, text]) => {
      const o = document.createElement('option');
      o.value = value;
      o.textContent = text;
      return o;
    }));
    sel.value = String(current);
    const show = choices.length > 1;
    sel.hidden = !show;
    sel.labels.forEach((l) => { l.hidden = !show; });
    if (show) menus.hidden = false;
    sel.onchange = () => onPick(Number(sel.value));
  };
  const trackName = (t, i) => t.name || t.lang || `Track ${i + 1}`;

  if (src && window.Hls?.isSupported()) {
    // A live playlist plays from its start, not from near its end (its
    // EXT-X-START says so to every player too).
    const hls = new Hls({enableWorker: false, ...(live ? {startPosition: 0} : {})});
    window.herdEmbed.hls = hls;
    // The live playlist ended (EXT-X-ENDLIST): nothing more is coming.
    hls.on(Hls.Events.LEVEL_UPDATED, (_, d) => { if (note && !d.details.live) note.hidden = true; });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
      // A ladder of two codecs (web-cmaf-av1) has two 360p rungs: say which is which.
      const codec = (l) => ({av01: 'AV1', avc1: 'H.264', avc3: 'H.264', hvc1: 'HEVC', hev1: 'HEVC'})[(l.videoCodec || '').slice(0, 4)] || '';
      const mixed = new Set(d.levels.map(codec)).size > 1;
      const levels = d.levels.map((l, i) => [i, `${l.height}p${mixed ? ' ' + codec(l) : ''}`]).sort((a, b) => d.levels[b[0]].height - d.levels[a[0]].height);
      if (levels.length > 1) menu('quality', [[-1, 'Auto'], ...levels], -1, (v) => { hls.currentLevel = v; });
    });
    hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, (_, d) => {
      menu('audio', d.audioTracks.map((t, i) => [i, trackName(t, i)]), hls.audioTrack, (v) => { hls.audioTrack = v; });
    });
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_, d) => {
      if (!d.subtitleTracks.length) return;
      const choices = [[-1, 'Off'], ...d.subtitleTracks.map((t, i) => [i, trackName(t, i)])];
      menu('subtitles', choices, hls.subtitleTrack, (v) => { hls.subtitleTrack = v; });
    });
    let recovered = 0;
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      if (recovered++ < 3 && d.type === Hls.ErrorTypes.NETWORK_ERROR) { hls.startLoad(); return; }
      if (recovered < 3 && d.type === Hls.ErrorTypes.MEDIA_ERROR) { hls.recoverMediaError(); return; }
      fail(d.details + (d.response?.code === 403 ? ' (the link has expired or was revoked)' : ''));
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (src && video.canPlayType('application/vnd.apple.mpegurl')) {
    video.src = src;
  } else if (file) {
    video.src = file;
  } else {
    fail('this browser plays neither HLS nor this file');
  }
})();
