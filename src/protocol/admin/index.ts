export {
  ADMIN_PROTOCOL_VERSION,
  MAX_ADMIN_MESSAGE_BYTES,
  ADMIN_METHODS,
  AdminProtocolError,
  encodeAdminMessage,
  decodeAdminRequest,
  decodeAdminResponse,
  type AdminMethod,
  type AdminRequest,
  type AdminResponse,
  type AdminProtocolErrorCode,
} from './codec.js';
export { readLine } from './transport.js';
export { adminCall, AdminCallError, AdminRemoteError, type AdminCallErrorCode } from './client.js';
export type { AdminHandler, AdminHandlers, AdminSocketLogger, AdminSocketOptions, AdminSocketServer, OpenAdminSocket } from './server-port.js';
