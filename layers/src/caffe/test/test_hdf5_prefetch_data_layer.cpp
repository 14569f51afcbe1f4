#ifdef USE_HDF5
#include <cstdlib>
#include <string>
#include <vector>

#include "hdf5.h"
#include "hdf5_hl.h"

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/hdf5_prefetch_data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/io.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

// Two files of 10 and 7 rows, three datasets: "data" (rows x 2 x 3),
// "label" (rows x 1) and "extra" (rows x 4). Every value names its row r
// (0..16 over both files): data 100 r + k, label r, extra -r - k / 10.
static const int kRows[2] = {10, 7};

template <typename TypeParam>
class HDF5PrefetchDataLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  virtual void SetUp() {
    MakeTempDir(&dir_);
    source_ = dir_ + "/list.txt";
    FILE* list = fopen(source_.c_str(), "w");
    int first = 0;
    for (int f = 0; f < 2; ++f) {
      const string name = dir_ + (f ? "/b.h5" : "/a.h5");
      WriteFile(name, first, kRows[f]);
      fprintf(list, "%s\n", name.c_str());
      first += kRows[f];
    }
    fclose(list);
  }

  static void WriteFile(const string& name, int first, int rows) {
    hid_t file = H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT,
        H5P_DEFAULT);
    ASSERT_GE(file, 0);
    vector<float> data, label, extra;
    for (int r = first; r < first + rows; ++r) {
      for (int k = 0; k < 6; ++k) data.push_back(100 * r + k);
      label.push_back(r);
      for (int k = 0; k < 4; ++k) extra.push_back(-r - k / 10.0f);
    }
    hsize_t d_dims[3] = {hsize_t(rows), 2, 3};
    hsize_t l_dims[2] = {hsize_t(rows), 1};
    hsize_t e_dims[2] = {hsize_t(rows), 4};
    ASSERT_GE(H5LTmake_dataset_float(file, "data", 3, d_dims, &data[0]), 0);
    ASSERT_GE(H5LTmake_dataset_float(file, "label", 2, l_dims, &label[0]), 0);
    ASSERT_GE(H5LTmake_dataset_float(file, "extra", 2, e_dims, &extra[0]), 0);
    ASSERT_GE(H5Fclose(file), 0);
  }

  // The values of every top over `iters` forwards of a layer of `type`.
  vector<Dtype> Run(const string& type, bool shuffle, int batch, int iters) {
    LayerParameter param;
    param.set_type(type);
    param.add_top("data");
    param.add_top("label");
    param.add_top("extra");
    param.mutable_hdf5_data_param()->set_source(source_);
    param.mutable_hdf5_data_param()->set_batch_size(batch);
    param.mutable_hdf5_data_param()->set_shuffle(shuffle);
    Blob<Dtype> data, label, extra;
    vector<Blob<Dtype>*> bottom, top;
    top.push_back(&data);
    top.push_back(&label);
    top.push_back(&extra);
    vector<Dtype> seen;
    shared_ptr<Layer<Dtype> > layer = LayerRegistry<Dtype>::CreateLayer(param);
    layer->SetUp(bottom, top);
    EXPECT_EQ(batch, data.shape(0));
    EXPECT_EQ(2, data.shape(1));
    EXPECT_EQ(3, data.shape(2));
    EXPECT_EQ(4, extra.shape(1));
    for (int it = 0; it < iters; ++it) {
      layer->Forward(bottom, top);
      for (int j = 0; j < top.size(); ++j) {
        const Dtype* v = top[j]->cpu_data();
        seen.insert(seen.end(), v, v + top[j]->count());
      }
    }
    return seen;
  }

  string dir_, source_;
};

TYPED_TEST_CASE(HDF5PrefetchDataLayerTest, TestDtypesAndDevices);

TYPED_TEST(HDF5PrefetchDataLayerTest, TestRowsInOrderAcrossFiles) {
  typedef typename TypeParam::Dtype Dtype;
  // Batches of 4 over 17 rows: row r of batch b is row (4 b + r) mod 17.
  const int batch = 4, iters = 9;
  const vector<Dtype> seen = this->Run("HDF5PrefetchData", false, batch, iters);
  ASSERT_EQ(iters * batch * (6 + 1 + 4), seen.size());
  for (int b = 0; b < iters; ++b) {
    const Dtype* d = &seen[b * batch * 11];
    const Dtype* l = d + batch * 6;
    const Dtype* e = l + batch;
    for (int i = 0; i < batch; ++i) {
      const int r = (b * batch + i) % 17;
      EXPECT_EQ(r, l[i]);
      for (int k = 0; k < 6; ++k) EXPECT_EQ(100 * r + k, d[i * 6 + k]);
      for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(-r - k / 10.0f, e[i * 4 + k]);
    }
  }
}

TYPED_TEST(HDF5PrefetchDataLayerTest, TestSameBatchesAsHDF5Data) {
  typedef typename TypeParam::Dtype Dtype;
  // Shuffled or not, the same rows in the same order as Caffe's HDF5Data
  // (shuffle draws from rand(): the same seed before each layer).
  for (int shuffle = 0; shuffle < 2; ++shuffle) {
    for (int batch = 1; batch <= 7; batch += 3) {
      srand(1701);
      const vector<Dtype> want = this->Run("HDF5Data", shuffle, batch, 12);
      srand(1701);
      const vector<Dtype> got = this->Run("HDF5PrefetchData", shuffle, batch,
          12);
      EXPECT_TRUE(want == got) << "shuffle " << shuffle << " batch " << batch;
    }
  }
}

TYPED_TEST(HDF5PrefetchDataLayerTest, TestNoRandomNumberFromCaffe) {
  // Setting the layer up and running it leaves Caffe's generator where it
  // was: the weight fillers after it draw what they draw after HDF5Data.
  Caffe::set_random_seed(1701);
  const unsigned int want = caffe_rng_rand();
  Caffe::set_random_seed(1701);
  this->Run("HDF5PrefetchData", true, 3, 5);
  EXPECT_EQ(want, caffe_rng_rand());
}

TYPED_TEST(HDF5PrefetchDataLayerTest, TestDestroyedRightAfterSetUp) {
  // The thread is stopped whether it is filling or waiting for a free batch.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(0, this->Run("HDF5PrefetchData", i % 2, 5, 0).size());
  }
}

}  // namespace caffe
#endif  // USE_HDF5
