/* OHIF app-config for the HipNode harness: one DICOMweb data source on the page's own
 * origin (the harness proxy forwards /dicom-web and /wado to Orthanc), so no CORS setup. */
(function () {
  var origin = window.location.origin;
  try {
    // The onboarding tour would cover the image on every fresh browser profile.
    window.localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
  } catch (e) { /* storage blocked: the tour only costs a click */ }
  window.config = {
    routerBasename: '/',
    extensions: [],
    modes: [],
    customizationService: {},
    showStudyList: true,
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: false,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    // Load SEG overlays straight away when their series is opened (no "load?" prompt).
    disableConfirmationPrompts: true,
    investigationalUseDialog: { option: 'never' },
    maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 10 },
    showErrorDetails: 'always',
    defaultDataSourceName: 'orthanc',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'orthanc',
        configuration: {
          friendlyName: 'HipNode harness Orthanc',
          name: 'orthanc',
          qidoRoot: origin + '/dicom-web',
          wadoRoot: origin + '/dicom-web',
          wadoUriRoot: origin + '/wado',
          qidoSupportsIncludeField: true,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: true,
          staticWado: false,
          singlepart: 'bulkdata,video',
          omitQuotationForMultipartRequest: true,
          bulkDataURI: { enabled: true },
        },
      },
    ],
  };
})();
