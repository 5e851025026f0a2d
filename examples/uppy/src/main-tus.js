// The tus variant of the example page (tus.html): Uppy's Dashboard with @uppy/tus, the
// bytes through the service itself (resumable), for browsers that can't reach storage.

import { startPage } from './page.js';
import { useUploadBrokerTus } from './upload-broker-tus.js';

startPage((uppy, { baseUrl }) => useUploadBrokerTus(uppy, { baseUrl }));
