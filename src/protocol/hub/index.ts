/** The hub protocol between CloudHub and EdgeHub (issue #5): messages, codec, resource model, close codes. */
export * from './messages.js';
export * from './codec.js';
export * from './resources.js';
export * from './devices.js';
export * from './status-detail.js';
