module.exports = {
  apps: [{
    name: 'flaky',
    script: 'flaky.js',
    min_uptime: 5000,
    max_restarts: 10,
    restart_delay: 4000,
    autorestart: true,
    stop_exit_codes: [0, 3],
    autostart: false,
    kill_timeout: '10s',
  }, {
    name: 'once',
    script: 'once.js',
    autorestart: false,
    stop_exit_codes: 0,
    min_uptime: '2s',
  }],
};
