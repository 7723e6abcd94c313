/** compnet's typed tensor layer over libtorch. */
export * from './tensor.js';
export * from './nn.js';
export * from './optim.js';
export * from './frozen.js';
export * from './profile.js';
export * from './distributed.js';
