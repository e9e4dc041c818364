export { addPageChecksums, rewritePageHeaders } from './add-page-checksums.js';
export { crc32 } from './crc32.js';
export {
  type PageChecksumOptions,
  type PageChecksumReport,
  verifyPageChecksums,
  verifyPageChecksumsIn,
} from './verify-page-checksums.js';
