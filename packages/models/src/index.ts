// Implemented by its issue; this package exports nothing yet.
export {};
