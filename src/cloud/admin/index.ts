/** The cloud's private admin socket (DIR/admin/admin.sock) and its methods. */
export {
  createCloudAdminServer,
  CloudAdminError,
  type CloudAdminErrorCode,
  type CloudAdminHandler,
  type CloudAdminHandlers,
  type CloudAdminLogger,
  type CloudAdminServer,
} from './server.js';
export {
  createCloudAdminHandlers,
  nodeView,
  CloudAdminModeError,
  type CloudAdminModeErrorCode,
  type CloudAdminDeps,
  type EntryAdmin,
  type NodeView,
} from './handlers.js';
export { peerUidOf, CloudPeerCredError, type CloudPeerCredErrorCode } from './peercred.js';
