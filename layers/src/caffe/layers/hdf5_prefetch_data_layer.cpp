#ifdef USE_HDF5
#include <unistd.h>

#include <boost/thread.hpp>

#include <cstring>
#include <vector>

#include "caffe/layers/hdf5_prefetch_data_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One lock for every HDF5 file this layer loads, in any net of the process.
static boost::mutex& hdf5_file_mutex() {
  static boost::mutex m;
  return m;
}

template <typename Dtype>
HDF5PrefetchDataLayer<Dtype>::~HDF5PrefetchDataLayer() {
  StopPrefetch();
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::StopPrefetch() {
  // A forked child holds no thread of its parent's to stop.
  if (thread_ && thread_->joinable() && owner_ == getpid()) {
    thread_->interrupt();
    thread_->join();
  }
  thread_.reset();
  free_.clear();
  full_.clear();
  current_ = NULL;
#ifndef CPU_ONLY
  for (int b = 0; b < released_.size(); ++b) {
    cudaEventDestroy(released_[b]);
  }
  released_.clear();
#endif
}

template <typename Dtype>
int HDF5PrefetchDataLayer<Dtype>::Index(const Batch* batch) const {
  for (int b = 0; b < batches_.size(); ++b) {
    if (batches_[b].get() == batch) return b;
  }
  LOG(FATAL) << "HDF5PrefetchData: a batch that is not the layer's";
  return -1;
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::Push(std::deque<Batch*>* queue,
    Batch* batch) {
  {
    boost::mutex::scoped_lock lock(queue_mutex_);
    queue->push_back(batch);
  }
  queue_changed_.notify_all();
}

template <typename Dtype>
typename HDF5PrefetchDataLayer<Dtype>::Batch*
HDF5PrefetchDataLayer<Dtype>::Pop(std::deque<Batch*>* queue) {
  boost::mutex::scoped_lock lock(queue_mutex_);
  while (queue->empty()) {
    queue_changed_.wait(lock);
  }
  Batch* batch = queue->front();
  queue->pop_front();
  return batch;
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::LoadHDF5FileData(const char* filename) {
  boost::mutex::scoped_lock lock(hdf5_file_mutex());
  HDF5DataLayer<Dtype>::LoadHDF5FileData(filename);
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  StopPrefetch();          // set up again: the old thread and batches go
  CHECK_GT(this->layer_param_.hdf5_data_param().batch_size(), 0) << this->type()
      << " " << this->layer_param_.name() << ": hdf5_data_param.batch_size must "
      << "be given and positive";
  // The list, the first file, the tops' shapes: HDF5Data's own setup.
  HDF5DataLayer<Dtype>::LayerSetUp(bottom, top);
  for (int j = 0; j < top.size(); ++j) {
    // Memory of their own until the first Forward: set up again, the tops
    // would still point into the batches freed below.
    top[j]->ShareData(Blob<Dtype>(top[j]->shape()));
  }
  batches_.clear();
  for (int b = 0; b < kPrefetch + 1; ++b) {
    shared_ptr<Batch> batch(new Batch());
    for (int j = 0; j < top.size(); ++j) {
      batch->push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>(top[j]->shape())));
      // Allocated here, on the net's thread (pinned host memory in GPU mode),
      // and left in sync: the thread's first fill copies nothing back.
      (*batch)[j]->mutable_cpu_data();
#ifndef CPU_ONLY
      if (Caffe::mode() == Caffe::GPU) {
        (*batch)[j]->gpu_data();
      }
#endif
    }
    batches_.push_back(batch);
    free_.push_back(batch.get());
  }
#ifndef CPU_ONLY
  if (Caffe::mode() == Caffe::GPU) {
    released_.resize(batches_.size());
    for (int b = 0; b < released_.size(); ++b) {
      CUDA_CHECK(cudaEventCreateWithFlags(&released_[b],
          cudaEventDisableTiming));
    }
  }
#endif
  int device = 0;
#ifndef CPU_ONLY
  if (Caffe::mode() == Caffe::GPU) {
    CUDA_CHECK(cudaGetDevice(&device));
  }
#endif
  owner_ = getpid();
  mode_ = Caffe::mode();
  thread_.reset(new boost::thread(&HDF5PrefetchDataLayer<Dtype>::Prefetch,
      this, Caffe::mode(), device, Caffe::solver_count(),
      Caffe::solver_rank()));
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::LoadBatch(Batch* batch) {
  const int batch_size = this->layer_param_.hdf5_data_param().batch_size();
  for (int i = 0; i < batch_size; ++i) {
    while (this->Skip()) {
      this->Next();
    }
    for (int j = 0; j < batch->size(); ++j) {
      Blob<Dtype>* blob = (*batch)[j].get();
      const int data_dim = blob->count() / blob->shape(0);
      // Host to host: memcpy, not caffe_copy, which in GPU mode issues a
      // cudaMemcpy that would queue behind the training kernels.
      memcpy(&blob->mutable_cpu_data()[i * data_dim],
          &this->hdf_blobs_[j]->cpu_data()[
              this->data_permutation_[this->current_row_] * data_dim],
          sizeof(Dtype) * data_dim);
    }
    this->Next();
  }
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::Prefetch(Caffe::Brew mode, int device,
    int solver_count, int solver_rank) {
#ifndef CPU_ONLY
  // The net's device first: Caffe's per-thread state, made below, opens its
  // cuBLAS and cuRAND handles on the current device.
  cudaStream_t stream;
  if (mode == Caffe::GPU) {
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
#endif
  // Caffe's state is per thread: this one works in the net's mode and solver
  // rank (HDF5Data's Skip reads them), and draws no random number from Caffe.
  Caffe::set_mode(mode);
  Caffe::set_solver_count(solver_count);
  Caffe::set_solver_rank(solver_rank);
  try {
    while (!boost::this_thread::interruption_requested()) {
      Batch* batch = Pop(&free_);
      LoadBatch(batch);
#ifndef CPU_ONLY
      if (mode == Caffe::GPU) {
        // Not before the GPU is done with this batch's device memory.
        CUDA_CHECK(cudaStreamWaitEvent(stream, released_[Index(batch)], 0));
        for (int j = 0; j < batch->size(); ++j) {
          (*batch)[j]->data().get()->async_gpu_push(stream);
        }
        CUDA_CHECK(cudaStreamSynchronize(stream));
      }
#endif
      Push(&full_, batch);
    }
  } catch (boost::thread_interrupted&) {
    // Expected when the layer is destroyed.
  }
#ifndef CPU_ONLY
  if (mode == Caffe::GPU) {
    CUDA_CHECK(cudaStreamDestroy(stream));
  }
#endif
}

template <typename Dtype>
typename HDF5PrefetchDataLayer<Dtype>::Batch*
HDF5PrefetchDataLayer<Dtype>::TakeBatch() {
  CHECK_EQ(owner_, getpid()) << this->type() << " " << this->layer_param_.name()
      << ": its reading thread does not survive fork(); make the net in the "
      << "process that runs it";
  CHECK_EQ(mode_, Caffe::mode()) << this->type() << " "
      << this->layer_param_.name() << ": set up in one Caffe mode (CPU/GPU) "
      << "and run in the other; set the mode before making the net";
  if (current_) {
#ifndef CPU_ONLY
    if (!released_.empty()) {
      // Kernels queued until now (the last backward pass) may still read it.
      CUDA_CHECK(cudaEventRecord(released_[Index(current_)], 0));
    }
#endif
    Push(&free_, current_);
  }
  current_ = Pop(&full_);
  return current_;
}

template <typename Dtype>
void HDF5PrefetchDataLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  TakeBatch();
  for (int j = 0; j < top.size(); ++j) {
    top[j]->ReshapeLike(*(*current_)[j]);
    top[j]->set_cpu_data((*current_)[j]->mutable_cpu_data());
  }
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(HDF5PrefetchDataLayer, Forward);
#endif

INSTANTIATE_CLASS(HDF5PrefetchDataLayer);
REGISTER_LAYER_CLASS(HDF5PrefetchData);

}  // namespace caffe
#endif  // USE_HDF5
