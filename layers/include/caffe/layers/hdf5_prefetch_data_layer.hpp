#ifndef CAFFE_HDF5_PREFETCH_DATA_LAYER_HPP_
#define CAFFE_HDF5_PREFETCH_DATA_LAYER_HPP_

#include <boost/thread.hpp>

#include <sys/types.h>

#include <deque>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/hdf5_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief HDF5Data that reads batch n+1 while batch n trains.
 *
 * Same parameters (hdf5_data_param: source, batch_size, shuffle), same tops
 * (any number, one per dataset) and the same sequence of rows as Caffe's
 * HDF5DataLayer, which copies each batch row by row on the training thread
 * and, in GPU mode, into device memory with one synchronous copy per row and
 * top. Here a thread of the layer's own fills kPrefetch batches ahead:
 *
 *   for each row r of the batch: top_j[r] = file_rows_j[permutation[row]]
 *   (the same Skip/Next walk over files and rows as HDF5DataLayer)
 *
 * into page-locked host memory and, in GPU mode, pushes it to the device on a
 * stream of its own; Forward only hands the ready batch's memory to the tops.
 * A batch handed back is refilled on the device only after the work queued on
 * the default stream until then (the last iteration's backward pass, which
 * reads it) is done: an event recorded there, waited for on the push stream.
 *
 * The thread draws no number from Caffe's random generator (Caffe's
 * InternalThread seeds its thread from it, which would shift every weight
 * filler after this layer): a net trained with this layer gets the same
 * weights as with HDF5Data. shuffle draws from the C library's rand(), as
 * HDF5Data does, from the thread as soon as it starts: the same sequence as
 * long as nothing else in the process draws from rand() meanwhile (a fold's
 * test layer does not shuffle). Loading a file takes a lock shared by every
 * HDF5PrefetchData layer of the process (the HDF5 library may be built without
 * thread safety, and a net's test layer reads its own files meanwhile); plain
 * HDF5Data layers, snapshots and h5py in the same process do not take it.
 * A file that cannot be read aborts with HDF5Data's own message. The thread
 * does not survive fork(): the layer refuses to run in a forked child.
 */
template <typename Dtype>
class HDF5PrefetchDataLayer : public HDF5DataLayer<Dtype> {
 public:
  explicit HDF5PrefetchDataLayer(const LayerParameter& param)
      : HDF5DataLayer<Dtype>(param), current_(), owner_(), mode_() {}
  virtual ~HDF5PrefetchDataLayer();
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "HDF5PrefetchData"; }

  // Batches filled ahead of the one in use: one being filled while one waits.
  static const int kPrefetch = 2;

 protected:
  typedef vector<shared_ptr<Blob<Dtype> > > Batch;

  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void LoadHDF5FileData(const char* filename);

  void LoadBatch(Batch* batch);
  int Index(const Batch* batch) const;
  // The batch the tops hold goes back to the thread, the next full one is
  // taken (checks shared by both Forwards).
  Batch* TakeBatch();
  void Prefetch(Caffe::Brew mode, int device, int solver_count,
      int solver_rank);
  void StopPrefetch();
  // The two queues, free (to fill) and full (to use), under one lock; Pop
  // waits (a point where the prefetch thread can be interrupted).
  void Push(std::deque<Batch*>* queue, Batch* batch);
  Batch* Pop(std::deque<Batch*>* queue);

  vector<shared_ptr<Batch> > batches_;
  std::deque<Batch*> free_;
  std::deque<Batch*> full_;
  boost::mutex queue_mutex_;
  boost::condition_variable queue_changed_;
  Batch* current_;
  shared_ptr<boost::thread> thread_;
  pid_t owner_;
  Caffe::Brew mode_;      // the mode the batches were set up (and are filled) in
#ifndef CPU_ONLY
  // Per batch: recorded on the default stream when Forward hands it back.
  vector<cudaEvent_t> released_;
#endif
};

}  // namespace caffe

#endif  // CAFFE_HDF5_PREFETCH_DATA_LAYER_HPP_
