package reader

// maxUserAddr is the end of user space: 47-bit addresses on x86-64 (the
// agent runs on its targets' architecture).
const maxUserAddr = 1 << 47
