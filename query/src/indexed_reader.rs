//! Parquet readers whose cached footers carry the page index.
//!
//! DataFusion's opener asks for a file's footer *without* the page index
//! and, when a predicate can use it, reads and parses the index afterwards,
//! outside the metadata cache. Every query that pruned pages thus parsed
//! the column and offset indexes of every file again: a fifth of the CPU
//! of a trace lookup (docs/benchmarks.md, "Session 12"). A reader made by
//! [`IndexedReaderFactory`] for a scan that uses the page index asks the
//! cache for the footer *with* it, so the index is read once per file and
//! the opener finds it already loaded.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;

/// Makes readers that share the runtime's footer cache and, when
/// `page_index` is set, load (and so cache) the page index with the footer.
#[derive(Debug)]
pub struct IndexedReaderFactory {
    cached: CachedParquetFileReaderFactory,
    page_index: bool,
}

impl IndexedReaderFactory {
    /// Readers of `store` caching footers in `cache`, with the page index
    /// when `page_index`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileMetadataCache>,
        page_index: bool,
    ) -> Self {
        Self {
            cached: CachedParquetFileReaderFactory::new(store, cache),
            page_index,
        }
    }
}

impl ParquetFileReaderFactory for IndexedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let inner =
            self.cached
                .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        if !self.page_index {
            return Ok(inner);
        }
        Ok(Box::new(WithPageIndex(inner)))
    }
}

/// A reader whose footer requests always include the page index.
struct WithPageIndex(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}
