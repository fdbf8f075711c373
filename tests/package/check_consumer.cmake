# Builds and runs an outside consumer of tessera, on a machine that might as well lack Eigen (every configure
# runs with CMAKE_DISABLE_FIND_PACKAGE_Eigen3):
#   cmake -DMODE=find_package|find_package_core|add_subdirectory -DSOURCE_DIR=... -DWORK_DIR=... -P check_consumer.cmake
# find_package_core asks the installed package for tessera::core alone, with nlohmann_json, Threads and JPEG
# disabled too: that component needs nothing but OpenMP.
function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "step failed (${result}): ${ARGV}\n${output}")
  endif()
  message("${output}")
endfunction()

set(without_eigen -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON)
file(REMOVE_RECURSE ${WORK_DIR})
if(MODE MATCHES "^find_package")
  set(consumer_dir ${SOURCE_DIR}/tests/package/find_package)
  set(consumer_options -DCORE_ONLY=OFF)
  if(MODE STREQUAL "find_package_core")
    set(consumer_options -DCORE_ONLY=ON -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON
                         -DCMAKE_DISABLE_FIND_PACKAGE_Threads=ON -DCMAKE_DISABLE_FIND_PACKAGE_JPEG=ON)
  elseif(NOT MODE STREQUAL "find_package")
    message(FATAL_ERROR "MODE must be find_package, find_package_core or add_subdirectory")
  endif()
  run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/tessera -DCMAKE_BUILD_TYPE=Release ${without_eigen}
           -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_INSTALL=ON)
  run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/tessera --prefix ${WORK_DIR}/prefix)
  run_step(${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer -DCMAKE_BUILD_TYPE=Release ${without_eigen}
           ${consumer_options} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "add_subdirectory")
  # No build type: the consumer checks that tessera, a subproject here, does not set one.
  run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/add_subdirectory -B ${WORK_DIR}/consumer
           ${without_eigen} -DTESSERA_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be find_package, find_package_core or add_subdirectory")
endif()
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
if(EXISTS ${WORK_DIR}/consumer/readme_example)
  run_step(${WORK_DIR}/consumer/readme_example)
elseif(NOT MODE STREQUAL "find_package_core")
  message(FATAL_ERROR "readme_example was not built")
endif()
run_step(${WORK_DIR}/consumer/core_example)
