const base = { exec_mode: 'cluster_mode', kill_timeout: 3000 };
module.exports = {
  apps: [
    { ...base, name: 'api', script: './dist/api.js', instances: 'max', port: 8080,
      wait_ready: true, listen_timeout: 8000 },
    { ...base, name: 'ws', script: 'ws.js', instances: 0, env: { PORT: '9000' } },
  ],
};
