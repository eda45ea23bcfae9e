/** The cloud core. Today: its SQLite stores (join tokens, attested-node registry, CA state). */
export * from './store/index.js';
