/** `edgeward edge join`: bundle pinning, node key, attestation, the joined data dir layout. */
export { joinCloud, defaultNodeName, type JoinInput, type JoinDeps, type JoinResult } from './join.js';
export { attestNode, checkNodeSvid, loadX509PopEvidence, isReattestable, type NodeEvidence, type AttestedNode } from './attest.js';
export {
  layout,
  hasJoin,
  readJoinRecord,
  writeJoinRecord,
  readNodeState,
  writeNodeState,
  readNodeBundle,
  readSmallFile,
  nextKeyId,
  JOIN_FILE,
  type JoinRecord,
  type JoinMethod,
  type NodeState,
} from './layout.js';
