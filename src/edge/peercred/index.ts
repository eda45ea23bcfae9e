/**
 * Kernel-verified peer credentials for Unix-socket connections (SPIRE-style `unix` workload attestation,
 * reference §3) and their mapping onto grpc-js calls. Linux only; needs the native addon in
 * native/peercred (built by the package `install` script).
 */
export { PeerCredError, PEERCRED_ERROR_CODES, type PeerCredErrorCode } from './errors.js';
export {
  loadPeerCredAddon,
  peerCredAddon,
  peerCredAddonCandidates,
  peerCredAvailable,
  type PeerCredAddon,
  type RawPeerCred,
} from './native.js';
export {
  checkPeerCred,
  peerCredOf,
  peerCredOfFd,
  peerGroupsOf,
  peerGroupsOfFd,
  peerGroupsOfOptional,
  peerPidfdOfOptional,
  socketFd,
  type PeerCred,
} from './socket.js';
export {
  DEFAULT_MAX_STATUS_BYTES,
  ProcWatch,
  parsePidfdInfo,
  parseProcStat,
  parseProcStatus,
  pidOfPidfd,
  procStillSame,
  readExePath,
  readProcStart,
  readProcStat,
  readProcStatus,
  sha256OfExe,
  sha256OfFile,
  type IdSet,
  type ProcOptions,
  type ProcStat,
  type ProcStatus,
  type ProcWatchOptions,
  type Sha256Options,
} from './proc.js';
export {
  AccountDb,
  DEFAULT_MAX_ACCOUNT_FILE_BYTES,
  parseGroup,
  parsePasswd,
  type GroupEntry,
  type PasswdEntry,
} from './accounts.js';
export {
  UnixPeerRegistry,
  attachUnixPeerServer,
  type AttachOptions,
  type CallWithPeer,
  type ConnectionInjectorLike,
  type UnixPeer,
  type UnixPeerRegistryOptions,
} from './registry.js';
