// The deployment plan's own ecosystem file ("Process Management").
module.exports = {
  apps: [{
    name: 'layer4-chat',
    script: 'server/server.js',
    instances: 1,
    exec_mode: 'cluster',
    env: {
      NODE_ENV: 'production',
      PORT: 3001
    },
    max_memory_restart: '1G',
    error_file: './logs/err.log',
    out_file: './logs/out.log',
    log_file: './logs/combined.log'
  }]
};
