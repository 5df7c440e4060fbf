export default {
  apps: [{
    name: 'logger',
    script: 'logger.mjs',
    instances: 2,
    merge_logs: false,
    time: true,
    log_date_format: 'YYYY-MM-DD HH:mm:ss.SSS Z',
    log_type: 'json',
    error_file: '/dev/null',
    log_file: true,
    pid_file: './pids/logger.pid',
    disable_logs: false,
  }, {
    name: 'plain',
    script: 'plain.mjs',
    time: false,
    log_date_format: '%Y-%m-%d %H:%M',
    out_file: 'NULL',
  }],
};
