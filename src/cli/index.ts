/** The command-line front end: `main` is what bin/edgeward.js runs. */
export { main, processIo, packageVersion, COMMANDS, EXIT_OK, EXIT_FAILURE, EXIT_USAGE } from './main.js';
export { parseArgs, formatFlags, printable, type ArgsSpec, type FlagSpec, type FlagSpecs, type FlagValues, type ParsedArgs } from './args.js';
export { defineCommand, type CliIo, type Command, type CommandDefinition } from './command.js';
export { CliError, CliUsageError, CLI_ERROR_CODES, type CliErrorCode } from './errors.js';
export { readBoundedFile, readBoundedStdin, MAX_INPUT_FILE_BYTES } from './files.js';
export { prepareOutputDir, writeFilesAtomic, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, OUTPUT_DIR_MODE, type OutputFile } from './write-files.js';
export { createLogger, errorFields, REDACT_PATHS, type LogFields, type EdgewardLogger, type LoggerOptions } from './logger.js';
