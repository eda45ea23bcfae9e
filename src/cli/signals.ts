/** Foreground commands (`cloud start`, `edge start`) run until the operator stops them. */

/** Resolves at the first SIGINT or SIGTERM (the listeners are removed then). */
export function waitForStopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
