/**
 * The cloud's admin methods, served on its private admin socket (DIR/admin/admin.sock) through the
 * OpenAdminSocket port (src/protocol; src/cli/host supplies the socket server).
 */
export {
  createCloudAdminHandlers,
  nodeView,
  CloudAdminError,
  CloudAdminModeError,
  type CloudAdminErrorCode,
  type CloudAdminModeErrorCode,
  type CloudAdminDeps,
  type EntryAdmin,
  type NodeView,
} from './handlers.js';
