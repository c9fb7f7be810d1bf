import init from '/ui/veilshare_frontend.js';
init({ module_or_path: '/ui/veilshare_frontend_bg.wasm' });
