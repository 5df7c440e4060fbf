const secret = process.env.L4_IMPORT_TEST_SECRET || 'from-the-file';
module.exports = {
  apps: [{
    name: 'chat',
    script: 'server.js',
    env: { NODE_ENV: 'development', DB_PASSWORD: secret, QUOTE: 'say "hi"\nbye', EMPTY: null, LIST: [1, 2] },
    env_production: { NODE_ENV: 'production', PORT: 80 },
    env_staging: { NODE_ENV: 'staging' },
    filter_env: ['AWS_'],
    append_env_to_name: true,
  }],
};
