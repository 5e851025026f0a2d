// The example page (index.html): Uppy's Dashboard with @uppy/aws-s3, the bytes straight to
// storage through the service's presigned URLs.

import { startPage } from './page.js';
import { useUploadBroker } from './upload-broker.js';

startPage((uppy, { baseUrl }) => useUploadBroker(uppy, { baseUrl }));
