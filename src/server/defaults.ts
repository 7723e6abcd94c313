/** The viewer's defaults, in a module without the web framework so the CLI can name them without loading it. */

/** Port `compnet serve` listens on unless told otherwise. */
export const DEFAULT_PORT = 8765;
