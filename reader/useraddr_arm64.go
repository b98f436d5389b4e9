package reader

// maxUserAddr is the end of user space: 48-bit addresses on arm64, where
// position-independent programs load near 0xaaaa_aaaa_0000, above amd64's
// 47-bit limit (the agent runs on its targets' architecture).
const maxUserAddr = 1 << 48
