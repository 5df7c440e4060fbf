module.exports = {
  apps: [{
    name: 'workers',
    script: 'worker.js',
    exec_mode: 'fork',
    instances: 4,
    increment_var: 'PORT',
    instance_var: 'INSTANCE_ID',
    env: { PORT: 4000, NODE_ENV: 'development' },
  }, {
    name: 'jobs',
    script: 'jobs.js',
    instances: 2,
    increment_var: 'WORKER_ID',
  }],
};
