/** Shared test helpers. */
export { freePort } from './ports.js';
export { tempDir } from './temp.js';
export { runCli, openssl, buildProject, REPO_ROOT, CLI_PATH, type RunResult, type RunCliOptions, type OpensslResult, type OpensslOptions } from './process.js';
export { startDaemon, type Daemon, type LogLine, type StartDaemonOptions } from './daemon.js';
export { eventually, type EventuallyOptions } from './wait.js';
export { startTcpProxy, type TcpProxy, type TcpProxyOptions } from './tcp-proxy.js';
